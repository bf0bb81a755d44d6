"""The console of one power-cut boot: the recovery verdict, and what the writer issued and acked.

The guest (``guest/selftest/powercut.py``) prints ``POWERCUT: issue <i>`` before it starts
write ``i`` and ``POWERCUT: acked <i>`` after its sync returned; after replaying what the
previous boot left it prints ``SELFTEST: powercut recover ok head=<m>`` (or ``... FAIL``). The
patterns come from the marker contract (``harness/contract/contract.toml``: ``powercut-recover``,
``powercut-issue``, ``powercut-acked``, and statefsd's ``statefsd-replayed`` for the report);
:func:`boot_contract` makes the recovery marker required for a power-cut boot and keeps the
contract's failure patterns, so a FAIL line, a traceback, a panic or ``statefsd: fatal`` ends
the boot as they end any other.

:class:`BootWatch` feeds the console drainer's transcript to a
:class:`~harness.contract.matcher.BootMatcher` and reads every complete line it matched for the
writer's progress. The host is the judge of durability, so it keeps the highest sequence number of
each kind.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from harness.contract.matcher import BootMatcher, Outcome, ProgressCallback
from harness.contract.spec import BootContract, Contract, Marker
from harness.deadline import Deadline
from harness.errors import ContractError
from harness.vm.machine import Machine

log = logging.getLogger(__name__)

RECOVER_MARKER = "powercut-recover"
ISSUE_MARKER = "powercut-issue"
ACKED_MARKER = "powercut-acked"
#: Optional: statefsd's start-up line (records replayed, what ended the replay).
REPLAYED_MARKER = "statefsd-replayed"

_READ_SLICE = 0.05
EXCERPT_LINES = 12


def boot_contract(contract: Contract, number: int, *, timeout: float) -> BootContract:
    """Boot ``number`` of a campaign: the recovery marker required, the writer's markers
    optional, the contract's failure patterns."""
    by_id = {marker.id: marker for marker in contract.markers}
    missing = [m for m in (RECOVER_MARKER, ISSUE_MARKER, ACKED_MARKER) if m not in by_id]
    if missing:
        raise ContractError(f"{contract.source}: no marker {', '.join(missing)} (power cuts)")
    groups = {RECOVER_MARKER: "head", ISSUE_MARKER: "seq", ACKED_MARKER: "seq"}
    for marker_id, group in groups.items():
        if group not in by_id[marker_id].pattern.regex.groupindex:
            raise ContractError(f"{contract.source}: marker {marker_id} needs a group {group!r}")
    markers: tuple[Marker, ...] = (
        dataclasses.replace(by_id[RECOVER_MARKER], required=True),
        by_id[ISSUE_MARKER],
        by_id[ACKED_MARKER],
    )
    if REPLAYED_MARKER in by_id:
        markers += (dataclasses.replace(by_id[REPLAYED_MARKER], required=False),)
    return BootContract(
        number=number,
        markers=markers,
        failures=contract.failures,
        timeout=timeout,
        failure_grace=contract.failure_grace,
    )


@dataclass
class WriterProgress:
    """The highest issued and acknowledged sequence numbers seen (None: none yet)."""

    issued: int | None = None
    acked: int | None = None

    def see(self, issue: Marker, acked: Marker, line: str) -> None:
        match = issue.pattern.search(line)
        if match is not None:
            seq = int(match["seq"])
            self.issued = seq if self.issued is None else max(self.issued, seq)
            return
        match = acked.pattern.search(line)
        if match is not None:
            seq = int(match["seq"])
            self.acked = seq if self.acked is None else max(self.acked, seq)


class BootWatch:
    """Read ``machine``'s console against a power-cut boot contract (module docstring)."""

    def __init__(
        self,
        machine: Machine,
        contract: BootContract,
        *,
        multiplier: float = 1.0,
        on_event: ProgressCallback | None = None,
    ) -> None:
        self.machine = machine
        self.matcher = BootMatcher(contract, multiplier=multiplier, on_event=on_event)
        by_id = {marker.id: marker for marker in contract.markers}
        self._issue = by_id[ISSUE_MARKER]
        self._acked = by_id[ACKED_MARKER]
        self.progress = WriterProgress()
        self._cursor = 0
        self._lines_read = 0
        self.ended = False
        self._grace: Deadline | None = None

    # -- state ------------------------------------------------------------------------------
    @property
    def recovered(self) -> int | None:
        arrival = self.matcher.arrivals.get(RECOVER_MARKER)
        return None if arrival is None else int(arrival.groups["head"])

    @property
    def recovered_at(self) -> float | None:
        arrival = self.matcher.arrivals.get(RECOVER_MARKER)
        return None if arrival is None else arrival.at

    @property
    def replay(self) -> tuple[int | None, str]:
        """Records statefsd replayed at start-up and what ended the replay (``zeros``, ``crc
        mismatch``...); ``(None, "")`` if it formatted the disk or did not say."""
        arrival = self.matcher.arrivals.get(REPLAYED_MARKER)
        if arrival is None or "records" not in arrival.groups:
            return None, ""
        return int(arrival.groups["records"]), arrival.groups.get("tail", "").strip()

    @property
    def failed(self) -> bool:
        return self.matcher.outcome in (Outcome.FAILED, Outcome.TIMEOUT)

    @property
    def failure(self) -> str:
        """Why the boot failed ("" if it did not), with the failure line when there is one."""
        if not self.failed:
            return ""
        hit = self.matcher.failure
        return f"{self.matcher.reason}: {hit.line.strip()}" if hit else self.matcher.reason

    # -- reading ----------------------------------------------------------------------------
    def pump(self, timeout: float | None) -> None:
        """Feed what the console has (waiting up to ``timeout`` for more) to the matcher."""
        if self.ended:
            return
        chunks, self._cursor, ended = self.machine.console.transcript.read(
            self._cursor, timeout=timeout
        )
        for text, at in chunks:
            self.matcher.feed(text, at)
        if ended:
            self.ended = True
            self.matcher.flush()
        for _, line in self.matcher.lines[self._lines_read :]:
            self.progress.see(self._issue, self._acked, line)
        self._lines_read = len(self.matcher.lines)
        self.matcher.check_time(self.machine.now())
        if self.failed and self._grace is None:
            self._grace = Deadline(self.matcher.contract.failure_grace, label="failure grace")

    def _settled(self) -> bool:
        """A failure seen and its grace (the traceback after the line) over, or the end."""
        return self.ended or (self._grace is not None and self._grace.expired)

    def until_recovered(self, deadline: Deadline) -> bool:
        """Read until the recovery marker, a failure, the console's end or ``deadline``;
        True if the guest's own check passed."""
        while self.recovered is None and not self._settled() and not deadline.expired:
            self.pump(deadline.timeout(cap=_READ_SLICE))
        if self.recovered is None and not self.failed:
            self.matcher.finish(
                "the console ended before the recovery marker"
                if self.ended
                else f"no recovery marker within {deadline.seconds:g} s ({deadline.label})",
                timed_out=not self.ended,
            )
        return self.recovered is not None and not self.failed

    def until(self, at: float, deadline: Deadline) -> bool:
        """Read until ``at`` seconds after launch; False early on a failure or the end."""
        while self.machine.now() < at and not deadline.expired:
            self.pump(min(_READ_SLICE, max(0.0, at - self.machine.now())))
            if self.failed or self.ended:
                while not self._settled():
                    self.pump(_READ_SLICE)
                return False
        return True

    def until_end(self, deadline: Deadline) -> bool:
        """Read until the console ends (the guest powered off); False on a failure or at
        ``deadline``."""
        while not self.ended and not deadline.expired:
            self.pump(deadline.timeout(cap=_READ_SLICE))
            if self.failed:
                while not self._settled():
                    self.pump(_READ_SLICE)
                return False
        return self.ended and not self.failed

    def drain(self) -> None:
        """After QEMU is gone: read the rest (the drainer has reached EOF or soon will)."""
        deadline = Deadline(5.0, label="console drain")
        while not self.ended and not deadline.expired:
            self.pump(_READ_SLICE)

    def excerpt(self, max_lines: int = EXCERPT_LINES) -> str:
        """The console around what matters: the failure line (the matcher's excerpt), else the
        lines up to the recovery marker, else the last lines."""
        if self.matcher.failure is not None:
            return "\n".join(self.matcher.excerpt())
        arrival = self.matcher.arrivals.get(RECOVER_MARKER)
        end = arrival.line_no if arrival is not None else len(self.matcher.lines)
        start = max(0, end - max_lines)
        return "\n".join(
            f"{index + 1:5d} {'?' if at is None else f'{at:7.2f}'}  {line}"
            for index, (at, line) in enumerate(self.matcher.lines[start:end], start)
        )
