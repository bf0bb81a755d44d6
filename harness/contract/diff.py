"""Compare two runs (``python -m harness diff RUN_A RUN_B``): what changed between a green and a
red run, or between two lanes.

Both runs are replayed through the same contract (:mod:`harness.contract.history`), then per
boot:

* **missing / extra**: markers that arrived in A but not in B, and the other way round;
* **order**: markers that arrived in both but in another relative order (those outside the
  longest common subsequence of the two arrival orders, so one moved marker is one entry);
* **timing**: each common marker's arrival in A and B and the drift ``B - A`` in seconds;
* **divergence**: the first console line where the two runs differ, after masking what
  differs in every run (kernel timestamps ``[    1.234]``, hex strings of 16 digits or more
  such as nonces and key fingerprints, decimal numbers such as ``89.1 ms``).

Marker sets and outcomes decide whether the runs are "the same" (the CLI's exit code); order,
timing and the divergence are there to read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.contract.history import ReplayedBoot, replay
from harness.contract.profiles import DEFAULT_PROFILE, recorded_profile
from harness.contract.spec import Contract

_KERNEL_TIME = re.compile(r"\[\s*\d+\.\d+\]")
_LONG_HEX = re.compile(r"\b[0-9a-f]{16,}\b")
_DECIMAL = re.compile(r"\d+\.\d+")


def normalize(line: str) -> str:
    """``line`` with the values that differ in every run masked (see the module docstring)."""
    line = _KERNEL_TIME.sub("[<t>]", line)
    line = _LONG_HEX.sub("<hex>", line)
    return _DECIMAL.sub("<n>", line).rstrip()


@dataclass(frozen=True)
class Drift:
    marker: str
    a: float | None
    b: float | None

    @property
    def drift(self) -> float | None:
        return None if self.a is None or self.b is None else round(self.b - self.a, 3)


@dataclass(frozen=True)
class Divergence:
    line_no: int  # 1-based, in both consoles
    a: str | None  # None: A's console ended here
    b: str | None


@dataclass
class BootDiff:
    number: int
    outcome_a: str
    outcome_b: str
    missing: list[str] = field(default_factory=list)  # in A, not in B
    extra: list[str] = field(default_factory=list)  # in B, not in A
    moved: list[str] = field(default_factory=list)
    order_a: list[str] = field(default_factory=list)
    order_b: list[str] = field(default_factory=list)
    timing: list[Drift] = field(default_factory=list)
    divergence: Divergence | None = None

    @property
    def same(self) -> bool:
        return self.outcome_a == self.outcome_b and not (self.missing or self.extra)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["timing"] = [{**asdict(d), "drift": d.drift} for d in self.timing]
        data["same"] = self.same
        return data


@dataclass
class RunDiff:
    a: Path
    b: Path
    boots: list[BootDiff]

    @property
    def same(self) -> bool:
        return all(boot.same for boot in self.boots)

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": str(self.a),
            "b": str(self.b),
            "same": self.same,
            "boots": [b.as_dict() for b in self.boots],
        }


def _moved(order_a: Sequence[str], order_b: Sequence[str]) -> list[str]:
    """Common markers outside the longest common subsequence of the two orders."""
    common = set(order_a) & set(order_b)
    a = [m for m in order_a if m in common]
    b = [m for m in order_b if m in common]
    lengths = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            lengths[i][j] = (
                lengths[i + 1][j + 1] + 1
                if a[i] == b[j]
                else max(lengths[i + 1][j], lengths[i][j + 1])
            )
    keep, i, j = set(), 0, 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            keep.add(a[i])
            i, j = i + 1, j + 1
        elif lengths[i + 1][j] >= lengths[i][j + 1]:
            i += 1
        else:
            j += 1
    return [m for m in b if m not in keep]


def _divergence(a: ReplayedBoot | None, b: ReplayedBoot | None) -> Divergence | None:
    lines_a = [line for _, line in a.matcher.lines] if a else []
    lines_b = [line for _, line in b.matcher.lines] if b else []
    for index in range(max(len(lines_a), len(lines_b))):
        left = lines_a[index] if index < len(lines_a) else None
        right = lines_b[index] if index < len(lines_b) else None
        if left is None or right is None or normalize(left) != normalize(right):
            return Divergence(index + 1, left, right)
    return None


def _order(boot: ReplayedBoot | None) -> list[str]:
    if boot is None:
        return []
    return [a.marker_id for a in sorted(boot.matcher.arrivals.values(), key=lambda a: a.line_no)]


def diff_boot(number: int, a: ReplayedBoot | None, b: ReplayedBoot | None) -> BootDiff:
    """Compare one boot of two runs (``None``: that run has no such boot)."""
    order_a, order_b = _order(a), _order(b)
    arrivals_a = a.matcher.arrivals if a else {}
    arrivals_b = b.matcher.arrivals if b else {}
    either = a or b
    contract_order = [m.id for m in either.matcher.contract.markers] if either else []
    timing = [
        Drift(marker, arrivals_a[marker].at, arrivals_b[marker].at)
        for marker in contract_order
        if marker in arrivals_a and marker in arrivals_b
    ]
    return BootDiff(
        number=number,
        outcome_a=a.matcher.outcome.value if a else "not run",
        outcome_b=b.matcher.outcome.value if b else "not run",
        missing=[m for m in order_a if m not in arrivals_b],
        extra=[m for m in order_b if m not in arrivals_a],
        moved=_moved(order_a, order_b),
        order_a=order_a,
        order_b=order_b,
        timing=timing,
        divergence=_divergence(a, b),
    )


def diff_runs(a: Path, b: Path, contract: Contract) -> RunDiff:
    """Replay both runs through ``contract`` (each under the profile its ``run.json``
    records) and compare them boot by boot."""
    lane_a = contract.with_profile(recorded_profile(a) or DEFAULT_PROFILE)
    lane_b = contract.with_profile(recorded_profile(b) or DEFAULT_PROFILE)
    boots_a = {boot.number: boot for boot in replay(a, lane_a)}
    boots_b = {boot.number: boot for boot in replay(b, lane_b)}
    numbers = sorted(set(boots_a) | set(boots_b))
    return RunDiff(a, b, [diff_boot(n, boots_a.get(n), boots_b.get(n)) for n in numbers])


def render(result: RunDiff, *, drift_threshold: float = 0.0) -> list[str]:
    """The human-readable diff: one block per boot."""
    out = [f"A: {result.a}", f"B: {result.b}"]
    for boot in result.boots:
        out.append(f"boot {boot.number}: A {boot.outcome_a.upper()}, B {boot.outcome_b.upper()}")
        out.append(f"  missing in B: {', '.join(boot.missing) or 'none'}")
        out.append(f"  extra in B:   {', '.join(boot.extra) or 'none'}")
        out.append(f"  order changed: {', '.join(boot.moved) or 'none'}")
        drifting = [d for d in boot.timing if abs(d.drift or 0.0) >= drift_threshold]
        if drifting:
            out.append("  timing (s since launch):      A        B    drift")
            for d in drifting:
                a = "?" if d.a is None else f"{d.a:8.2f}"
                b = "?" if d.b is None else f"{d.b:8.2f}"
                drift = "?" if d.drift is None else f"{d.drift:+8.2f}"
                out.append(f"    {d.marker:<24} {a} {b} {drift}")
        div = boot.divergence
        if div is None:
            out.append("  consoles: the same (volatile values masked)")
        else:
            out.append(f"  consoles diverge at line {div.line_no}:")
            out.append(f"    A: {div.a if div.a is not None else '(console ended)'}")
            out.append(f"    B: {div.b if div.b is not None else '(console ended)'}")
    out.append("runs: the same markers and outcomes" if result.same else "runs: differ")
    return out
