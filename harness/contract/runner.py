"""Boot sequences: watch one boot against its contract, and run the multi-boot contract.

:func:`watch_boot` is the loop every VM test uses: it feeds the console to a
:class:`~harness.contract.matcher.BootMatcher` as the drainer reads it, applies the deadline and the
per-marker timeouts, notices QMP ``GUEST_PANICKED``, and stops at the first decisive event:

* a failure line: keep reading for the contract's ``failure_grace`` (the traceback after
  it), then stop - no waiting for the timeout;
* every required marker, when ``until="markers"`` (``RUN_UNTIL_MARKER=1``);
* the guest's power-off (console EOF), when ``until="poweroff"``; then QEMU's exit must be a
  guest shutdown, or the boot fails;
* the deadline.

:class:`ContractRunner` runs the boots of the contract on one disk, one QEMU process each,
passes captured values forward (``same_across_boots``) and writes ``run.json``, also when the
run is interrupted (the interrupted boot is recorded with what its console showed). Every boot
but the last always runs to the guest's power-off, even with ``until_marker``: cutting a boot
short could lose what the next boot is about to check. The run holds its disk for the whole
sequence (:mod:`harness.vm.disklock`) and keeps a sparse copy of it before each later boot
(``disk.before-boot2.img``), so one boot can be replayed on the disk it really started from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.artifacts import RUN_SUMMARY, VmArtifacts
from harness.atomic import write_json
from harness.contract.matcher import BootMatcher, Outcome, ProgressCallback
from harness.contract.phases import boots_until_phase, first_failed_phase, until_phase
from harness.contract.spec import Contract
from harness.deadline import Deadline, parse_multiplier
from harness.diagnosis import FORMAT_FORCE_ARG, boot_hints
from harness.errors import ConfigError, DeadlineExceeded, Terminated
from harness.vm.config import Accel, DiskSpec, MachineConfig
from harness.vm.disklock import hold_disks
from harness.vm.disks import snapshot_disks
from harness.vm.kernel_args import new_nonce, render
from harness.vm.machine import ExitInfo, Machine, MachineState
from harness.vm.qmp import GUEST_PANICKED
from harness.vm.recording import RunRecorder

log = logging.getLogger(__name__)

Until = Literal["markers", "poweroff"]
ConsoleEcho = Callable[[str], None]

_READ_SLICE = 0.25


@dataclass
class BootResult:
    """One boot's verdict with its evidence."""

    number: int
    matcher: BootMatcher
    artifacts: VmArtifacts
    argv: list[str]
    exit: ExitInfo | None
    accel: str

    @property
    def outcome(self) -> Outcome:
        return self.matcher.outcome

    @property
    def passed(self) -> bool:
        return self.matcher.outcome is Outcome.PASSED

    def report(self) -> str:
        header = f"boot {self.number}: {self.outcome.value.upper()}"
        text = self.matcher.report(header=header)
        lines = [text]
        if self.exit is not None:
            lines.append(f"  qemu: {self.exit.describe()} ({self.accel})")
        lines.append(f"  uart.log: {self.artifacts.uart_log}")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        m = self.matcher
        return {
            "number": self.number,
            "outcome": m.outcome.value,
            "reason": m.reason,
            "dir": str(self.artifacts.path),
            "accel": self.accel,
            "argv": self.argv,
            "exit": None
            if self.exit is None
            else {
                "returncode": self.exit.returncode,
                "how": self.exit.how,
                "at": round(self.exit.at, 3),
                "reason": self.exit.reason,
            },
            "markers": {
                a.marker_id: {
                    "at": a.at,
                    "line_no": a.line_no,
                    "line": a.line,
                    "groups": dict(a.groups),
                }
                for a in m.arrivals.values()
            },
            "missing": [marker.id for marker in m.missing],
            "counts": dict(m.counts),
            "failed_phase": getattr(
                first_failed_phase(m.contract, m.arrivals, m.failure), "name", None
            )
            if m.outcome is not Outcome.PASSED
            else None,
            "hints": list(m.hints),
            "failure": None
            if m.failure is None
            else {
                "id": m.failure.pattern_id,
                "at": m.failure.at,
                "line_no": m.failure.line_no,
                "line": m.failure.line,
                "reason": m.failure.reason,
            },
        }


@dataclass
class RunResult:
    """All boots of one contract run."""

    run_dir: Path
    nonce: str
    boots: list[BootResult] = field(default_factory=list)
    expected_boots: tuple[int, ...] = ()

    @property
    def passed(self) -> bool:
        done = tuple(b.number for b in self.boots)
        return done == self.expected_boots and all(b.passed for b in self.boots)

    @property
    def uart_logs(self) -> list[Path]:
        return [b.artifacts.uart_log for b in self.boots]

    def report(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"marker contract {verdict} (run {self.run_dir.name}, nonce {self.nonce})"]
        lines += [boot.report() for boot in self.boots]
        skipped = [n for n in self.expected_boots if n not in {b.number for b in self.boots}]
        if skipped:
            lines.append(f"boots not run after the failure: {', '.join(map(str, skipped))}")
        return "\n".join(lines)


def watch_boot(
    machine: Machine,
    matcher: BootMatcher,
    deadline: Deadline,
    *,
    until: Until = "poweroff",
    echo: ConsoleEcho | None = None,
) -> Outcome:
    """Feed ``machine``'s console to ``matcher`` until a decisive event; see module doc.

    A boot that did not pass gets hints about the likely cause in its report
    (:func:`harness.diagnosis.boot_hints`: a broken image, a hung guest). Leaves the machine
    running or exited; the caller stops it (``with`` does).
    """
    outcome = _watch(machine, matcher, deadline, until=until, echo=echo)
    if outcome is not Outcome.PASSED:
        for hint in boot_hints(
            matcher.lines,
            now=machine.now(),
            qemu_exited=machine.console.transcript.closed,
            failed=outcome is Outcome.FAILED,
            timed_out=outcome is Outcome.TIMEOUT,
            multiplier=matcher.multiplier,
        ):
            matcher.add_hint(hint)
    return outcome


def _watch(
    machine: Machine,
    matcher: BootMatcher,
    deadline: Deadline,
    *,
    until: Until,
    echo: ConsoleEcho | None,
) -> Outcome:
    transcript = machine.console.transcript
    cursor = 0
    grace_deadline: Deadline | None = None
    panicked_seen = 0
    while True:
        wait_for = _READ_SLICE if grace_deadline is None else grace_deadline.timeout(_READ_SLICE)
        chunks, cursor, ended = transcript.read(cursor, timeout=deadline.timeout(cap=wait_for))
        for text, at in chunks:
            if echo is not None:
                echo(text)
            matcher.feed(text, at)
        events = machine.qmp.events if machine.state is MachineState.RUNNING else []
        for event in events[panicked_seen:]:
            if event.get("event") == GUEST_PANICKED:
                matcher.fail(f"QMP {GUEST_PANICKED} at {event.get('host_t')} s")
        panicked_seen = len(events)
        matcher.check_time(machine.now())
        outcome = matcher.outcome
        if outcome is Outcome.FAILED:
            if grace_deadline is None:
                grace_deadline = Deadline(matcher.contract.failure_grace, label="failure grace")
            if grace_deadline.expired or ended:
                matcher.flush()
                return outcome
            continue
        if outcome is Outcome.TIMEOUT:
            return outcome
        if outcome is Outcome.PASSED and until == "markers":
            return outcome
        if ended:
            if outcome is Outcome.PASSED:
                matcher.flush()
                return matcher.outcome
            return matcher.finish("the console ended (QEMU exited) before every marker arrived")
        if deadline.expired:
            if outcome is Outcome.PASSED:
                matcher.fail(
                    f"every marker arrived but the guest did not power off within "
                    f"{deadline.seconds:g} s ({deadline.label})"
                )
                return matcher.outcome
            return matcher.finish(
                f"{deadline.label}: {deadline.seconds:g} s passed", timed_out=True
            )


def run_boot(
    machine: Machine,
    matcher: BootMatcher,
    deadline: Deadline,
    *,
    until: Until = "poweroff",
    echo: ConsoleEcho | None = None,
) -> BootResult:
    """Launch ``machine``, watch it, stop it, and return the verdict with the evidence.

    With ``until="poweroff"`` a passing boot must also end in the guest's own power-off.
    Launch errors propagate (they are harness errors, not contract verdicts).
    """
    with machine:
        watch_boot(machine, matcher, deadline, until=until, echo=echo)
        if matcher.outcome is Outcome.PASSED and until == "poweroff":
            try:
                # Its own budget: the boot deadline may be spent by the time the markers end.
                machine.wait(Deadline(5.0, label="exit after console EOF"))
            except DeadlineExceeded:
                matcher.fail("the console ended but QEMU did not exit")
    exit_info = machine.exit_info
    if (
        matcher.outcome is Outcome.PASSED
        and until == "poweroff"
        and exit_info is not None
        and not exit_info.guest_powered_off
    ):
        matcher.fail(f"the guest did not power off cleanly: {exit_info.describe()}")
    return _boot_result(machine, matcher)


def _boot_result(machine: Machine, matcher: BootMatcher) -> BootResult:
    return BootResult(
        number=matcher.contract.number,
        matcher=matcher,
        artifacts=machine.artifacts,
        argv=machine.argv,
        exit=machine.exit_info,
        accel=machine.accel.name if machine.accel else "?",
    )


def _interruption(exc: BaseException) -> str:
    return f"signal {exc.signum}" if isinstance(exc, Terminated) else "Ctrl-C"


@dataclass(frozen=True)
class RunOptions:
    """How to run the contract (the CLI's ``run`` flags)."""

    until_marker: bool = False
    timeout: float | None = None  # the whole run (RUN_TIMEOUT); not scaled
    multiplier: float = 1.0
    nonce: str | None = None
    boots: Sequence[int] | None = None  # default: every boot of the contract
    #: Let the run's first boot format a disk that is neither blank nor a statefs volume
    #: (``sq.format=force``; without it statefsd refuses such a disk).
    format_disk: bool = False
    #: Stop at the first boot with a marker of this phase, once the phases up to it are
    #: complete (:mod:`harness.contract.phases`).
    until_phase: str | None = None


class ContractRunner:
    """Run the contract's boots on one disk (see the module docstring)."""

    def __init__(
        self,
        base_config: MachineConfig,
        contract: Contract,
        *,
        run_dir: Path,
        options: RunOptions = RunOptions(),
        progress: ProgressCallback | None = None,
        echo: ConsoleEcho | None = None,
        on_boot_start: Callable[[int, Machine], None] | None = None,
        recorder: RunRecorder | None = None,
    ) -> None:
        if not base_config.disks:
            raise ConfigError("the contract needs a disk: MachineConfig.disks is empty")
        parse_multiplier(options.multiplier)
        self.base_config = base_config
        self.contract = contract
        self.run_dir = run_dir
        self.options = options
        self.progress = progress
        self.echo = echo
        self.on_boot_start = on_boot_start
        self.recorder = recorder

    def run(self) -> RunResult:
        nonce = self.options.nonce or new_nonce()
        numbers = tuple(self.options.boots or self.contract.boot_numbers)
        if self.options.until_phase is not None:
            numbers = boots_until_phase(self.contract, self.options.until_phase, numbers)
        result = RunResult(self.run_dir, nonce, expected_boots=numbers)
        overall = Deadline(self.options.timeout, label="run timeout")
        pins: dict[str, dict[str, str]] = {}
        try:
            with hold_disks(self.base_config.disks):
                self._run_boots(result, numbers, nonce, overall, pins)
        finally:
            self.write_summary(result)
        return result

    def _run_boots(
        self,
        result: RunResult,
        numbers: tuple[int, ...],
        nonce: str,
        overall: Deadline,
        pins: dict[str, dict[str, str]],
    ) -> None:
        for index, number in enumerate(numbers):
            last = index == len(numbers) - 1
            boot = self.contract.for_boot(number)
            if last and self.options.until_phase is not None:
                boot = until_phase(boot, self.options.until_phase)
            args = render(boot.kernel_args, {"nonce": nonce, "boot": number})
            if index == 0 and self.options.format_disk:
                args = (*args, FORMAT_FORCE_ARG)
            if index > 0:
                snapshot_disks(self.base_config.disks, self.run_dir, number)
            config = self.base_config.with_kernel_args(*args)
            if self.recorder is not None:
                config = self.recorder.boot_config(number, config)
            machine = Machine(config, name=f"boot{number}", artifacts_root=self.run_dir)
            deadline = overall.child(
                boot.timeout * self.options.multiplier, label=f"boot {number} timeout"
            )
            matcher = BootMatcher(
                boot, pinned=pins, multiplier=self.options.multiplier, on_event=self.progress
            )
            stop_early = self.options.until_marker or self.options.until_phase is not None
            until: Until = "markers" if (last and stop_early) else "poweroff"
            if self.on_boot_start is not None:
                self.on_boot_start(number, machine)
            try:
                boot_result = run_boot(machine, matcher, deadline, until=until, echo=self.echo)
            except (KeyboardInterrupt, Terminated) as exc:
                if machine.origin is not None:  # QEMU ran: keep what its console showed
                    matcher.finish(f"the run was interrupted ({_interruption(exc)})")
                    result.boots.append(_boot_result(machine, matcher))
                raise
            finally:
                if self.recorder is not None and machine.state is MachineState.STOPPED:
                    how = machine.exit_info.how if machine.exit_info else None
                    self.recorder.boot_done(number, machine.artifacts.path, how)
            result.boots.append(boot_result)
            if not boot_result.passed:
                break
            for marker_id, values in matcher.pins_for_next_boot().items():
                pins.setdefault(marker_id, {}).update(values)

    def write_summary(self, result: RunResult) -> Path:
        path = self.run_dir / RUN_SUMMARY
        data = {
            "run": self.run_dir.name,
            "contract": self.contract.source,
            "nonce": result.nonce,
            "until_marker": self.options.until_marker,
            "until_phase": self.options.until_phase,
            "profile": self.contract.profile_name,
            "timeout": self.options.timeout,
            "multiplier": self.options.multiplier,
            "expected_boots": list(result.expected_boots),
            "passed": result.passed,
            "boots": [boot.summary() for boot in result.boots],
        }
        if self.recorder is not None:
            data["record"] = self.recorder.summary()
        return write_json(path, data)


def contract_config(
    image: Any, disk: Path, *, cache: str = "writeback", accel: Accel = "auto"
) -> MachineConfig:
    """The base config of a contract run: the image's boot profile plus one raw disk."""
    return MachineConfig.from_image(image, disks=(DiskSpec(str(disk), cache=cache),), accel=accel)
