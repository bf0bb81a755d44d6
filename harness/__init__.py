"""Host-side harness: builds the guest image, boots QEMU, reads the console, matches markers."""
