"""``python -m harness replay RUN [--boot N] [--gdb [PORT]]``: replay one recorded boot.

The record is checked first (every hash, :func:`harness.vm.replaying.check_boot`); a missing or
damaged record exits 2 before QEMU starts. Then QEMU replays the boot's log instruction for
instruction on a scratch overlay over the disk the boot started from, and the replayed console
is compared with the recorded one byte for byte: ``replay: console identical (N bytes)`` exits
0, a divergence prints where (byte, line, both lines) and exits 1.

``--gdb`` starts the replay paused with QEMU's gdb stub on a local port and prints the
``gdb-multiarch`` command that attaches; the replay then runs as gdb lets it, with no deadline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.artifacts import latest_run
from harness.cli.common import EXIT_FAILED, EXIT_HARNESS, EXIT_PASSED, setup_logging
from harness.contract.progress import ProgressPrinter
from harness.deadline import Deadline
from harness.vm.gdb import DEFAULT_GDB_PORT, gdb_command
from harness.vm.machine import Machine
from harness.vm.overlays import create_overlay
from harness.vm.recording import qemu_version
from harness.vm.replaying import BootRecord, RecordError, check_boot, compare_console, load_boot

#: A replay runs slower than its record; QEMU stopping this long after the console has all
#: the recorded bytes counts as the end of the replay.
IDLE_AFTER_END = 5.0
MIN_REPLAY_SECONDS = 120.0
REPLAY_SLOWDOWN = 5.0


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


def _wait(machine: Machine, expected: int, deadline: Deadline | None) -> str:
    """Until QEMU exits, or the console holds ``expected`` bytes and then stays quiet, or the
    deadline; returns which."""
    quiet_since, size = time.monotonic(), -1
    while machine.is_running():
        now_size = machine.artifacts.uart_log.stat().st_size
        if now_size != size:
            quiet_since, size = time.monotonic(), now_size
        if size >= expected and time.monotonic() - quiet_since > IDLE_AFTER_END:
            return "the console had every recorded byte and then stayed quiet"
        if deadline is not None and deadline.expired:
            return f"the replay deadline ({deadline.seconds:g} s) passed"
        time.sleep(0.2)
    return "QEMU exited"


def _recorded_seconds(boot: BootRecord) -> float:
    import json

    summary = json.loads((boot.run_dir / "run.json").read_text(encoding="utf-8"))
    for entry in summary.get("boots", []):
        if entry.get("number") == boot.number and entry.get("exit"):
            return float(entry["exit"].get("at") or 0.0)
    return 0.0


def command(args: argparse.Namespace) -> int:
    out = ProgressPrinter(prefix="")
    run_dir = args.run or latest_run()
    if run_dir is None:
        out.say("error: no run directory given and none found")
        return EXIT_HARNESS
    setup_logging(args.verbose)
    try:
        boot = load_boot(run_dir, args.boot)
        checked = check_boot(boot)
    except RecordError as exc:
        out.say(f"replay: refused: {exc}")
        return EXIT_HARNESS
    out.say(
        f"replay: run {run_dir.name}, boot {boot.number}: {len(checked)} files match the record"
    )
    recorded_qemu = boot.record.get("qemu", "?")
    config_qemu = boot.entry["config"].get("qemu_binary") or "qemu-system-aarch64"
    here = qemu_version(config_qemu)
    if here != recorded_qemu:
        out.say(f"warning: recorded with {recorded_qemu}, replaying with {here}: may diverge")
    recorded = boot.console.read_bytes()
    seconds = _recorded_seconds(boot)
    with tempfile.TemporaryDirectory(prefix="sq-replay-") as scratch_dir:
        scratch = create_overlay(
            Path(scratch_dir) / "scratch.qcow2", boot.backing, boot.backing_format
        )
        config = boot.replay_config(scratch, gdb_port=args.gdb)
        machine = Machine(config, name=f"replay-boot{boot.number}", artifacts_root=run_dir)
        deadline = None
        if args.gdb is None:
            limit = args.timeout or max(MIN_REPLAY_SECONDS, REPLAY_SLOWDOWN * seconds)
            deadline = Deadline(limit, label="replay timeout")
        started = time.monotonic()
        with machine:
            if args.gdb is not None:
                out.say(f"replay: paused at the first instruction, gdb stub on port {args.gdb}")
                for line in gdb_command(boot, args.gdb):
                    out.say(line)
            ended = _wait(machine, len(recorded), deadline)
        elapsed = time.monotonic() - started
    replayed = machine.artifacts.uart_log.read_bytes()
    out.say(f"replay: {ended} after {elapsed:.1f} s (recorded boot: {seconds:.1f} s)")
    out.say(f"replay: console in {machine.artifacts.uart_log}")
    divergence = compare_console(recorded, replayed)
    if divergence is None:
        out.say(f"replay: console identical ({len(recorded)} bytes)")
        return EXIT_PASSED
    out.say(divergence.describe())
    out.say(f"  recorded {len(recorded)} bytes, replayed {len(replayed)} bytes")
    return EXIT_FAILED
