"""pytest plugin for booting statefs-qemu VMs (registered through the pytest11 entry point)."""
