"""One QEMU guest: what it is, how it is started, and what it says.

Module map (one job each)::

    config       MachineConfig, DiskSpec: what one VM is (typed, validated)
    accel        KVM when it works for the guest arch, TCG otherwise, with the reason
    qemu_args    the QEMU command line from a config (pure)
    kernel_args  the guest's sq.* parameters: nonce, script payloads, the cmdline bound
    preflight    QEMU binary, disks, kernel and initramfs checked before anything is created
    sockets      the serial and QMP sockets QEMU connects back to, in a private directory
    state        MachineState, the @requires guard, ExitInfo (how QEMU ended)
    machine      Machine: one QEMU process, strict lifecycle, always cleaned up
    console      the serial console drainer: uart.log, uart.timestamps, expect()
    qmp          QmpSession: qemu.qmp on a private event loop, events with host times
    interactive  the console on a developer's terminal (Ctrl-] to quit)
    record       record/replay on the command line: -icount rr=..., blkreplay, refusals
    overlays     qcow2 overlays per boot (qemu-img) and file hashes
    recording    RunRecorder: a recorded run's files and run.json's record section
    replaying    reading a record back: hash checks, the replay config, the console diff
    replayer     replay_boot: one replay on a scratch overlay, to its end
    gdb          the gdb-multiarch command that attaches, and where the symbols are

The process supervision a Machine shares with the power-cut disk server (process group,
atexit kill, pdeathsig) is :mod:`harness.process`. Nothing is imported here.
"""
