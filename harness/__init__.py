"""Host-side harness: builds the guest image, boots QEMU, reads the console, matches markers.

Package map (each module one job; the tree reads as the architecture)::

    vm/           one QEMU guest: arch, config, accel, qemu_args, kernel_args, preflight,
                  sockets, state, machine, console, qmp, interactive, disks, disklock,
                  overlays, gdb, record/replay (record, recording, replaying, replayer)
    contract/     the marker contract: spec (+ contract.toml), policy, phases, profiles,
                  matcher, runner, history, progress, junit, diff, plot
    cli/          `python -m harness run|boot|image|markers|diff|powercut|crash-states|replay`,
                  one module each
    pytest_plugin fixtures, options and report hooks for pytest
    image/        the guest image builder (its own package)
    powercut/     power cuts of the virtual disk: nbdkit write-back cache, campaigns
    crashsim/     write logs and every crash state they allow (the host crash simulator)
    crashlog/     every crash state of a real guest run (QEMU's blklogwrites log), judged
    process       supervised children (QEMU, nbdkit): process group, atexit kill, pdeathsig
    errors        HarnessError and its evidence-carrying subclasses (standard library only)
    deadline      Deadline objects, durations (90s, 2m), the timeout multiplier bound
    artifacts     build/runs/<run>/<vm>/ layout
    diagnosis     likely causes for the user: a locked disk, a broken image, a hung guest
    atomic        files written whole or not at all (run.json, manifests)
    lines         console bytes split into lines the one way every reader agrees on
    shard         ``--shard K/N``: which cycles or seeds of a campaign one machine runs
    docfigures    figures in the docs, written by the command that measured them

There is no import circle, type-only imports included (tests/harness/test_harness_imports.py
pins it). Nothing is imported here: ``harness.pytest_plugin`` is loaded in every pytest
session.
"""
