"""Run one replay: QEMU on a scratch overlay, reading the boot's log, until the replay ends.

The end of a replay is QEMU's exit (the recorded guest powered off, or the log ran out), or
the console holding every recorded byte and then staying quiet, or a deadline (by default five
times the recorded boot, at least two minutes: a replay is slower than its record). Then the
console is compared byte for byte with the recorded one.

A boot the harness stopped itself (a failure line, then QMP ``quit``; a deadline) has a record
that ends there, mid-run: its replay is compared up to the recorded end, stopped once it got
there, and what QEMU printed past the end of the log is counted, not compared.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.artifacts import RUN_SUMMARY, VmArtifacts
from harness.deadline import Deadline
from harness.vm.machine import Machine
from harness.vm.overlays import create_overlay
from harness.vm.replaying import BootRecord, Divergence, compare_console

IDLE_AFTER_END = 5.0
SETTLE_AFTER_CUT = 1.0
MIN_REPLAY_SECONDS = 120.0
REPLAY_SLOWDOWN = 5.0


@dataclass(frozen=True)
class ReplayResult:
    """What one replay printed, against what the record printed."""

    recorded: bytes
    replayed: bytes
    divergence: Divergence | None
    ended: str
    seconds: float
    recorded_seconds: float
    artifacts: VmArtifacts
    beyond_record: int = 0  # bytes replayed past the end of a record the harness cut short

    @property
    def identical(self) -> bool:
        return self.divergence is None


def recorded_seconds(boot: BootRecord) -> float:
    """How long the recorded boot ran, launch to exit (0 if ``run.json`` does not say)."""
    summary = json.loads((boot.run_dir / RUN_SUMMARY).read_text(encoding="utf-8"))
    for entry in summary.get("boots", []):
        if entry.get("number") == boot.number and entry.get("exit"):
            return float(entry["exit"].get("at") or 0.0)
    return 0.0


def _wait(machine: Machine, expected: int, deadline: Deadline | None, *, cut: bool) -> str:
    quiet_since, size = time.monotonic(), -1
    reached: float | None = None
    while machine.is_running():
        now_size = machine.artifacts.uart_log.stat().st_size
        if now_size != size:
            quiet_since, size = time.monotonic(), now_size
        if cut and size >= expected:
            reached = reached or time.monotonic()
            if time.monotonic() - reached > SETTLE_AFTER_CUT:
                return "the console reached the end of the record (the harness stopped it there)"
        if size >= expected and time.monotonic() - quiet_since > IDLE_AFTER_END:
            return "the console had every recorded byte and then stayed quiet"
        if deadline is not None and deadline.expired:
            return f"the replay deadline ({deadline.seconds:g} s) passed"
        time.sleep(0.2)
    return "QEMU exited"


def replay_boot(
    boot: BootRecord,
    *,
    gdb_port: int | None = None,
    timeout: float | None = None,
    on_launched: Callable[[Machine], None] | None = None,
) -> ReplayResult:
    """Replay ``boot`` (already checked with :func:`check_boot`) into ``<run>/replay-bootN``.

    With ``gdb_port`` the replay starts paused and has no deadline: gdb drives it.
    """
    recorded = boot.console.read_bytes()
    seconds = recorded_seconds(boot)
    cut = boot.entry.get("exit") != "exited"  # not the guest's own power-off
    with tempfile.TemporaryDirectory(prefix="sq-replay-") as scratch_dir:
        scratch = create_overlay(
            Path(scratch_dir) / "scratch.qcow2", boot.backing, boot.backing_format
        )
        config = boot.replay_config(scratch, gdb_port=gdb_port)
        machine = Machine(config, name=f"replay-boot{boot.number}", artifacts_root=boot.run_dir)
        deadline = None
        if gdb_port is None:
            limit = timeout or max(MIN_REPLAY_SECONDS, REPLAY_SLOWDOWN * seconds)
            deadline = Deadline(limit, label="replay timeout")
        started = time.monotonic()
        with machine:
            if on_launched is not None:
                on_launched(machine)
            ended = _wait(machine, len(recorded), deadline, cut=cut)
        elapsed = time.monotonic() - started
    replayed = machine.artifacts.uart_log.read_bytes()
    compared = replayed[: len(recorded)] if cut else replayed
    return ReplayResult(
        recorded=recorded,
        replayed=replayed,
        divergence=compare_console(recorded, compared),
        beyond_record=len(replayed) - len(compared),
        ended=ended,
        seconds=elapsed,
        recorded_seconds=seconds,
        artifacts=machine.artifacts,
    )
