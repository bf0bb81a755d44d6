"""Host-side harness: builds the guest image, boots QEMU, reads the console, matches markers.

Module map (each module one job; the tree reads as the architecture)::

    config        MachineConfig, DiskSpec: what one VM is (typed, validated)
    accel         KVM when it works for the guest arch, TCG otherwise, with the reason
    qemu_args     the QEMU command line from a config (pure)
    kernel_args   the guest's sq.* parameters: nonce, script payloads, the cmdline bound
    machine       Machine: one QEMU process, strict lifecycle, always cleaned up
    console       the serial console drainer: uart.log, uart.timestamps, expect()
    qmp           QmpSession: qemu.qmp on a private event loop, events with host times
    contract      the marker contract as data (contract.toml): load and validate
    matcher       BootMatcher: order-tolerant matching, verdicts and reports
    runner        watch_boot / run_boot / ContractRunner: boot sequences
    diagnosis     likely causes for the user: a locked disk, a broken image, a hung guest
    history       replay a past run's console (the `markers` view)
    progress      live progress lines for a terminal or CI log
    interactive   the console on a developer's terminal (Ctrl-] to quit)
    artifacts     build/runs/<run>/<vm>/ layout
    deadline      Deadline objects and durations (90s, 2m)
    errors        HarnessError and its evidence-carrying subclasses
    cli           `python -m harness run|boot|image|markers|powercut`
    pytest_plugin fixtures, options and report hooks for pytest
    image         the guest image builder (its own package)
    powercut      power cuts of the virtual disk: nbdkit write-back cache, campaigns
    crashsim      write logs and every crash state they allow (the host crash simulator)

Nothing is imported here: ``harness.pytest_plugin`` is loaded in every pytest session.
"""
