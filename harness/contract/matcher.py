"""Order-tolerant matching of console text against one boot's contract.

The matcher works on plain text with times, not on a VM: the runner feeds it what the console
drainer read, the ``markers`` view feeds it a past run's ``uart.timestamps``, and the unit
tests feed it recorded transcripts in chunks of any size. It:

* splits the stream into lines by the one rule of :mod:`harness.lines` (a line ends at
  ``\n``; its time is its newline's), so a marker split across reads still matches once its
  newline arrives, and a replay of the recorded console cuts it the same way;
* checks every line against every marker (any order; duplicates counted, first arrival wins;
  unknown lines ignored) and every failure pattern;
* checks captured regex groups against the boot's expectations and against values pinned by
  earlier boots (``same_across_boots``): a mismatch is a failure naming both values;
* decides an :class:`Outcome` as soon as it can: FAILED on the first failure line, PASSED when
  every required marker arrived (the caller decides whether to keep watching), TIMEOUT when a
  marker's own deadline passed, INCOMPLETE when the stream ended early;
* renders a report: missing markers, the failure line, hints about the likely cause
  (added by the runner, see :mod:`harness.diagnosis`), and a bounded console excerpt around
  the last progress.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from harness.contract.phases import phase_summary
from harness.contract.policy import count_violation
from harness.contract.spec import BootContract, Marker
from harness.lines import LineSplitter, clean_line

EXCERPT_MAX_LINES = 40
EXCERPT_BEFORE_FAILURE = 10
EXCERPT_BEFORE_PROGRESS = 5


class Outcome(enum.Enum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class Arrival:
    """When and where a marker first matched (``at``: seconds since launch, if known)."""

    marker_id: str
    at: float | None
    line_no: int
    line: str
    groups: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FailureHit:
    """The line that ended the boot, and why."""

    pattern_id: str
    at: float | None
    line_no: int
    line: str
    reason: str


@dataclass(frozen=True)
class MatchEvent:
    """What the live progress display shows: a marker arrived or a failure was seen."""

    kind: str  # "marker", "optional", "failure", "complete"
    boot: int
    at: float | None
    marker_id: str
    line: str


ProgressCallback = Callable[[MatchEvent], None]


def _fmt_time(at: float | None) -> str:
    return "   ?   " if at is None else f"{at:7.2f}"


class BootMatcher:
    """Feed console text (:meth:`feed`), then read :attr:`outcome` and :meth:`report`.

    Args:
        contract: the boot's markers, failure patterns and timeouts.
        pinned: ``{marker id: {group: value}}`` from earlier boots that must match again.
        multiplier: scales the per-marker timeouts.
        on_event: called for each arrival and the failure, in the feeding thread.
    """

    def __init__(
        self,
        contract: BootContract,
        *,
        pinned: Mapping[str, Mapping[str, str]] | None = None,
        multiplier: float = 1.0,
        on_event: ProgressCallback | None = None,
    ) -> None:
        self.contract = contract
        self.pinned = {k: dict(v) for k, v in (pinned or {}).items()}
        self.multiplier = multiplier
        self.on_event = on_event
        self.lines: list[tuple[float | None, str]] = []
        self.arrivals: dict[str, Arrival] = {}
        self.counts: dict[str, int] = {}
        self.failure: FailureHit | None = None
        self.outcome = Outcome.RUNNING
        self.reason = ""
        #: What the evidence suggests about the cause (:mod:`harness.diagnosis`); shown in
        #: the report, never part of the verdict.
        self.hints: list[str] = []
        self._splitter = LineSplitter()
        self._complete_announced = False

    # -- input ------------------------------------------------------------------------------
    def feed(self, text: str, at: float | None = None) -> Outcome:
        """Add console text (any chunking); complete lines are matched now."""
        for line, line_at in self._splitter.feed(text, at):
            self.feed_line(line, line_at)
        return self.outcome

    def feed_line(self, line: str, at: float | None = None) -> Outcome:
        """Match one complete line (no newline) that arrived at ``at``."""
        line = clean_line(line)
        self.lines.append((at, line))
        line_no = len(self.lines)
        if self.outcome is Outcome.FAILED:
            return self.outcome  # keep the lines for the excerpt, decide nothing more
        for pattern in self.contract.failures:
            if pattern.search(line):
                self._fail(pattern.id, at, line_no, line, f"failure pattern {pattern.id!r}")
                return self.outcome
        matched = False
        for marker in self.contract.markers:
            match = marker.pattern.search(line)
            if match is None:
                continue
            matched = True
            groups = {k: v for k, v in match.groupdict().items() if v is not None}
            problem = self._check_groups(marker, groups, self.arrivals.get(marker.id))
            self.counts[marker.id] = self.counts.get(marker.id, 0) + 1
            problem = problem or count_violation(
                marker.id, self.counts[marker.id], marker.max_count
            )
            if problem:
                self._fail(marker.id, at, line_no, line, problem)
                return self.outcome
            if marker.id not in self.arrivals:
                self.arrivals[marker.id] = Arrival(marker.id, at, line_no, line, groups)
                self._emit("marker" if marker.required else "optional", at, marker.id, line)
        violation = self.contract.policy.violation(line, matched=matched)
        if violation is not None:
            self._fail(violation[0], at, line_no, line, violation[1])
            return self.outcome
        if self.outcome is Outcome.RUNNING and self.complete:
            self.outcome = Outcome.PASSED
            self.reason = "every required marker arrived"
            if not self._complete_announced:
                self._complete_announced = True
                self._emit("complete", at, "", "")
        return self.outcome

    def flush(self) -> Outcome:
        """Treat a trailing partial line as complete (the stream ended without a newline)."""
        last = self._splitter.flush()
        if last is not None:
            self.feed_line(*last)
        return self.outcome

    # -- time and end of stream -------------------------------------------------------------
    def check_time(self, now: float) -> Outcome:
        """Apply per-marker timeouts: a required marker late at ``now`` (seconds since launch)
        ends the boot as TIMEOUT, naming it."""
        if self.outcome is not Outcome.RUNNING:
            return self.outcome
        for marker in self.contract.required:
            if marker.timeout is None or marker.id in self.arrivals:
                continue
            limit = marker.timeout * self.multiplier
            if now >= limit:
                self.outcome = Outcome.TIMEOUT
                self.reason = f"marker {marker.id!r} not seen within {limit:g} s of launch"
                return self.outcome
        return self.outcome

    def finish(self, reason: str, *, timed_out: bool = False) -> Outcome:
        """The stream ended (VM exited, run deadline): settle a still-running outcome."""
        self.flush()
        if self.outcome is Outcome.RUNNING:
            self.outcome = Outcome.TIMEOUT if timed_out else Outcome.INCOMPLETE
            self.reason = reason
        return self.outcome

    # -- state ------------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return all(m.id in self.arrivals for m in self.contract.required)

    @property
    def missing(self) -> list[Marker]:
        return [m for m in self.contract.required if m.id not in self.arrivals]

    def captures(self) -> dict[str, dict[str, str]]:
        """``{marker id: groups}`` of every arrival that captured something."""
        return {mid: dict(a.groups) for mid, a in self.arrivals.items() if a.groups}

    def pins_for_next_boot(self) -> dict[str, dict[str, str]]:
        """The values later boots must repeat (``same_across_boots``)."""
        pins: dict[str, dict[str, str]] = {}
        for marker in self.contract.markers:
            arrival = self.arrivals.get(marker.id)
            if arrival is None:
                continue
            values = {g: arrival.groups[g] for g in marker.same_across_boots if g in arrival.groups}
            if values:
                pins[marker.id] = values
        return pins

    def _check_groups(
        self, marker: Marker, groups: Mapping[str, str], first: Arrival | None
    ) -> str:
        """Why these captured groups break the contract, or "".

        ``expect`` applies to the marker's first arrival in the boot (a service restarted
        within the boot may say ``loaded`` where its first start said ``created``); the
        ``same_across_boots`` groups must repeat, within the boot and across boots.
        """
        if first is None:
            for group, value in self.contract.expectations(marker).items():
                if groups.get(group) != value:
                    return (
                        f"marker {marker.id!r}: {group}={groups.get(group)!r}, "
                        f"expected {value!r} in boot {self.contract.number}"
                    )
        else:
            for group in marker.same_across_boots:
                if groups.get(group) != first.groups.get(group):
                    return (
                        f"marker {marker.id!r}: {group}={groups.get(group)!r} differs from "
                        f"{first.groups.get(group)!r} on line {first.line_no} of this boot"
                    )
        for group, value in self.pinned.get(marker.id, {}).items():
            if groups.get(group) != value:
                return (
                    f"marker {marker.id!r}: {group}={groups.get(group)!r} differs from "
                    f"the earlier boot's {value!r}"
                )
        return ""

    def add_hint(self, hint: str) -> None:
        """Record a likely cause for the report (ignored if already there)."""
        if hint and hint not in self.hints:
            self.hints.append(hint)

    def fail(self, reason: str) -> None:
        """A failure seen outside the console (a QMP event, QEMU's exit); keeps the first."""
        if self.outcome is not Outcome.FAILED:
            self.outcome = Outcome.FAILED
            self.reason = reason
            self._emit("failure", None, "", reason)

    def _fail(
        self, pattern_id: str, at: float | None, line_no: int, line: str, reason: str
    ) -> None:
        self.failure = FailureHit(pattern_id, at, line_no, line, reason)
        self.outcome = Outcome.FAILED
        self.reason = f"{reason} on line {line_no}"
        self._emit("failure", at, pattern_id, line)

    def _emit(self, kind: str, at: float | None, marker_id: str, line: str) -> None:
        if self.on_event is not None:
            self.on_event(MatchEvent(kind, self.contract.number, at, marker_id, line))

    # -- report -----------------------------------------------------------------------------
    def timeline(self) -> list[str]:
        """One line per marker of this boot, in arrival order, then the missing ones."""
        rows = []
        arrived = sorted(self.arrivals.values(), key=lambda a: a.line_no)
        by_id = {m.id: m for m in self.contract.markers}
        for arrival in arrived:
            marker = by_id[arrival.marker_id]
            flag = "ok " if marker.required else " · "
            dup = self.counts.get(arrival.marker_id, 1)
            extra = f"  (x{dup})" if dup > 1 else ""
            rows.append(f"  {flag} {_fmt_time(arrival.at)} s  {arrival.line.strip()}{extra}")
        for marker in self.missing:
            rows.append(f"  MISSING          {marker.pattern.display}  [{marker.id}]")
        return rows

    def excerpt(self, max_lines: int = EXCERPT_MAX_LINES) -> list[str]:
        """Console lines around the failure, or from the last progress to the end, bounded."""
        total = len(self.lines)
        if total == 0:
            return []
        if self.failure is not None:
            start = max(0, self.failure.line_no - 1 - EXCERPT_BEFORE_FAILURE)
            anchor = self.failure.line_no
        else:
            last = max((a.line_no for a in self.arrivals.values()), default=0)
            start = max(0, last - 1 - EXCERPT_BEFORE_PROGRESS)
            anchor = last
        window = list(range(start, total))
        if len(window) > max_lines:
            head = max_lines // 2
            tail = max_lines - head - 1
            window = [*window[:head], -1, *window[-tail:]]
        rows = []
        for index in window:
            if index == -1:
                rows.append("       ...  (lines skipped)")
                continue
            at, line = self.lines[index]
            mark = ">" if index + 1 == anchor else " "
            rows.append(f"{mark}{index + 1:5d} {_fmt_time(at)}  {line}")
        return rows

    def report(self, *, header: str = "") -> str:
        """The failure report: outcome, reason, failure line, timeline, missing, excerpt."""
        out = [header or f"boot {self.contract.number}: {self.outcome.value.upper()}"]
        if self.reason:
            out.append(f"  reason: {self.reason}")
        if self.failure is not None:
            out.append(
                f"  failure line {self.failure.line_no} "
                f"(at {_fmt_time(self.failure.at).strip()} s): {self.failure.line}"
            )
        phase = phase_summary(self.contract, self.arrivals, self.failure)
        if phase and self.outcome is not Outcome.PASSED:
            out.append(f"  {phase}")
        out.extend(f"  hint: {hint}" for hint in self.hints)
        missing = self.missing
        if missing:
            out.append("  missing markers: " + ", ".join(m.id for m in missing))
        out.append("  timeline:")
        out.extend(self.timeline() or ["  (no marker arrived)"])
        if self.outcome is not Outcome.PASSED:
            excerpt = self.excerpt()
            out.append(f"  console excerpt ({len(self.lines)} lines in total):")
            out.extend(excerpt or ["  (the console printed nothing)"])
        return "\n".join(out)
