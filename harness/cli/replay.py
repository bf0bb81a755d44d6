"""``python -m harness replay RUN [--boot N] [--gdb [PORT]]``: replay one recorded boot.

The record is checked first (every hash, :func:`harness.vm.replaying.check_boot`); a missing or
damaged record exits 2 before QEMU starts. Then QEMU replays the boot's log instruction for
instruction on a scratch overlay over the disk the boot started from
(:func:`harness.vm.replayer.replay_boot`), and the replayed console is compared with the
recorded one byte for byte: ``replay: console identical (N bytes)`` exits 0, a divergence
prints where (byte, line, both lines) and exits 1.

``--gdb`` starts the replay paused with QEMU's gdb stub on a local port and prints the
``gdb-multiarch`` command that attaches; the replay then runs as gdb lets it, with no deadline.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.artifacts import latest_run
from harness.cli.common import EXIT_FAILED, EXIT_HARNESS, EXIT_PASSED, setup_logging
from harness.contract.progress import ProgressPrinter
from harness.vm.gdb import DEFAULT_GDB_PORT, gdb_command
from harness.vm.machine import Machine
from harness.vm.recording import qemu_version
from harness.vm.replayer import replay_boot
from harness.vm.replaying import RecordError, check_boot, load_boot


def add_parser(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="replay one boot of a recorded run (run --record) and compare its console",
        description="Replay a boot recorded by `run --record` instruction for instruction, "
        "and compare its console with the recorded one byte for byte. Exit 0 if identical, "
        "1 on a divergence, 2 on a missing or damaged record.",
    )
    replay.add_argument(
        "run", type=Path, nargs="?", help="the run directory (default: the latest run)"
    )
    replay.add_argument(
        "--boot", type=int, default=None, help="boot number (default: the failing boot, else 1)"
    )
    replay.add_argument(
        "--gdb",
        type=int,
        nargs="?",
        const=DEFAULT_GDB_PORT,
        default=None,
        metavar="PORT",
        help=f"start paused with the gdb stub on 127.0.0.1:PORT (default {DEFAULT_GDB_PORT})",
    )
    replay.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds the replay may take (default: 5x the recorded boot, at least 120)",
    )
    replay.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    out = ProgressPrinter(prefix="")
    run_dir = args.run or latest_run()
    if run_dir is None:
        out.say("replay: refused: no run directory given and none found")
        return EXIT_HARNESS
    setup_logging(args.verbose)
    try:
        boot = load_boot(run_dir, args.boot)
        checked = check_boot(boot)
    except RecordError as exc:
        out.say(f"replay: refused: {exc}")
        return EXIT_HARNESS
    out.say(f"replay: run {run_dir.name}, boot {boot.number}: {len(checked)} files match")
    recorded_qemu = boot.record.get("qemu", "?")
    here = qemu_version(boot.entry["config"].get("qemu_binary") or "qemu-system-aarch64")
    if here != recorded_qemu:
        out.say(f"warning: recorded with {recorded_qemu}, replaying with {here}: may diverge")

    def on_launched(_machine: Machine) -> None:
        if args.gdb is not None:
            out.say(f"replay: paused at the first instruction, gdb stub on port {args.gdb}")
            for line in gdb_command(boot, args.gdb):
                out.say(line)

    result = replay_boot(boot, gdb_port=args.gdb, timeout=args.timeout, on_launched=on_launched)
    out.say(
        f"replay: {result.ended} after {result.seconds:.1f} s "
        f"(recorded boot: {result.recorded_seconds:.1f} s)"
    )
    out.say(f"replay: console in {result.artifacts.uart_log}")
    if result.beyond_record:
        out.say(
            f"replay: {result.beyond_record} bytes printed past the end of the record "
            "(the harness stopped the recorded boot there) are not compared"
        )
    if result.divergence is None:
        out.say(f"replay: console identical ({len(result.recorded)} bytes)")
        return EXIT_PASSED
    out.say(result.divergence.describe())
    out.say(f"  recorded {len(result.recorded)} bytes, replayed {len(result.replayed)} bytes")
    return EXIT_FAILED
