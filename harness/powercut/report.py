"""What a campaign prints and keeps: one row per cycle, a summary, and ``powercut.json``.

Plain text for a terminal and a CI log alike; the JSON holds the same numbers for tools.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import atomic
from harness.powercut.verdict import Verdict

REPORT_NAME = "powercut.json"
#: A copy of the disk as the latest boot found it (the previous cut resolved): a campaign stops
#: at its first failed cycle, so this is the disk the failing check read.
DISK_AT_BOOT = "disk.at-last-boot.img"

_COLUMNS = (
    ("cycle", 5),
    ("cut at s / seq", 14),
    ("on", 5),
    ("fate", 26),
    ("pending", 7),
    ("acked", 6),
    ("issued", 6),
    ("recovered", 9),
    ("verdict", 8),
)
_FATE_COLUMN = 3


@dataclass(frozen=True)
class CycleResult:
    """One cut and its verdict, with the evidence a failure report needs.

    ``cut_at`` is seconds after QEMU's launch, ``cut_seq`` the highest write issued by then;
    ``start`` the head the boot recovered, ``acked``/``issued`` the highest numbers it printed
    (None: none); ``recovered`` what the next boot found, ``replay_tail`` what ended its replay
    (``zeros``, ``crc mismatch``...: a torn or dropped write), ``compacted`` whether the store
    compacted during the cut boot. ``scheduled`` is the trigger the schedule gave the cycle;
    ``cut_trigger`` the one that took effect (``time`` when its condition did not come).
    """

    cycle: int
    seed: int
    verdict: Verdict
    reason: str
    start: int
    acked: int | None
    issued: int | None
    recovered: int | None
    cut_at: float | None = None
    cut_seq: int | None = None
    cut_trigger: str = ""
    scheduled: str = ""
    fate: str = ""
    fate_kind: str = ""
    pending: int = 0
    rolled_back: bool = False
    boot_seconds: float = 0.0
    recovery_at: float | None = None
    boot_dir: str = ""
    verify_dir: str = ""
    excerpt: str = ""
    replay_tail: str = ""
    compacted: bool = False

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    @property
    def writes_acked(self) -> int:
        return 0 if self.acked is None else self.acked - self.start

    def evidence(self, run_dir: Path | str) -> str:
        """Everything needed to investigate a failed cycle, from the report alone."""
        lines = [
            f"cycle {self.cycle} {self.verdict.value}: {self.reason}",
            f"  seed {self.seed}; cut at {_num(self.cut_at, '.2f')} s after launch "
            f"({self.cut_trigger or '-'}), last issued {_num(self.cut_seq)}",
            f"  fate {self.fate or '-'} ({self.pending} writes pending"
            f"{', a flush rolled back' if self.rolled_back else ''})",
            f"  started at head {self.start}; acked {_num(self.acked)}; issued "
            f"{_num(self.issued)}; recovered {_num(self.recovered)}",
            f"  artifacts: {run_dir} (cut boot {self.boot_dir or '-'}, "
            f"checking boot {self.verify_dir or '-'}, the disk it found: {DISK_AT_BOOT})",
        ]
        if self.excerpt:
            lines.append("  console excerpt:")
            lines.extend(f"    {line}" for line in self.excerpt.splitlines())
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict.value
        data["writes_acked"] = self.writes_acked
        return data


@dataclass
class CampaignResult:
    """Every cycle of one campaign, plus what it took."""

    run_dir: Path
    seed: int
    nonce: str
    cycles_requested: int
    cycles: list[CycleResult] = field(default_factory=list)
    seconds: float = 0.0
    final_pending: int = 0
    error: str = ""
    shard: tuple[int, int] = (1, 1)

    @property
    def passed(self) -> bool:
        return (
            not self.error
            and len(self.cycles) == self.cycles_requested
            and all(c.passed for c in self.cycles)
        )

    def count(self, verdict: Verdict) -> int:
        return sum(1 for c in self.cycles if c.verdict is verdict)

    @property
    def losses(self) -> int:
        return self.count(Verdict.LOSS)


def _num(value: float | int | None, spec: str = "d") -> str:
    return "-" if value is None else format(value, spec)


def table_header() -> str:
    return "  ".join(
        name.ljust(width) if i == _FATE_COLUMN else name.rjust(width)
        for i, (name, width) in enumerate(_COLUMNS)
    )


def table_row(cycle: CycleResult) -> str:
    cut = f"{_num(cycle.cut_at, '.2f')} / {_num(cycle.cut_seq)}"
    cells = (
        str(cycle.cycle),
        cut,
        cycle.cut_trigger or "-",
        cycle.fate or "-",
        str(cycle.pending),
        _num(cycle.acked),
        _num(cycle.issued),
        _num(cycle.recovered),
        cycle.verdict.value,
    )
    return "  ".join(
        cell.ljust(width) if i == _FATE_COLUMN else cell.rjust(width)
        for i, (cell, (_, width)) in enumerate(zip(cells, _COLUMNS, strict=True))
    )


def summary_lines(result: CampaignResult) -> list[str]:
    cycles = result.cycles
    passed = sum(1 for c in cycles if c.passed)
    lines = [
        f"cycles: {len(cycles)} of {result.cycles_requested} ({passed} passed)  "
        f"losses: {result.losses}  invented: {result.count(Verdict.INVENTED)}  "
        f"failures: {result.count(Verdict.FAIL)}"
    ]
    if cycles:
        fates = Counter(c.fate_kind or "-" for c in cycles)
        pending = [c.pending for c in cycles]
        lines.append(
            "fates: "
            + ", ".join(f"{kind} {n}" for kind, n in sorted(fates.items()))
            + f"; flushes rolled back: {sum(1 for c in cycles if c.rolled_back)}"
            + f"; pending writes at the cut: mean {statistics.fmean(pending):.1f}, "
            f"max {max(pending)}"
        )
        triggers = Counter(c.cut_trigger or "-" for c in cycles)
        lines.append(
            "cuts by trigger: " + ", ".join(f"{t} {n}" for t, n in sorted(triggers.items()))
        )
        tails = Counter(c.replay_tail for c in cycles if c.replay_tail)
        lines.append(
            f"store: compacted during {sum(1 for c in cycles if c.compacted)} cycles; "
            "replay after the cut ended at: "
            + (", ".join(f"{tail} {n}" for tail, n in sorted(tails.items())) or "-")
        )
        acked = [c.writes_acked for c in cycles]
        boot = [c.boot_seconds for c in cycles]
        recovery = [c.recovery_at for c in cycles if c.recovery_at is not None]
        lines.append(
            f"writes acked: {sum(acked)} (per cycle: mean {statistics.fmean(acked):.0f}, "
            f"min {min(acked)}, max {max(acked)}); cycle time: mean "
            f"{statistics.fmean(boot):.1f} s"
            + (f" (launch to recovery {statistics.fmean(recovery):.1f} s)" if recovery else "")
            + f"; campaign {result.seconds:.0f} s"
        )
    if result.error:
        lines.append(f"stopped: {result.error}")
    return lines


def render(result: CampaignResult, *, table: bool = True) -> str:
    """The table (unless the rows were printed live), the summary, and each failed cycle's
    evidence."""
    lines = [table_header(), *(table_row(c) for c in result.cycles), ""] if table else []
    lines += summary_lines(result)
    for cycle in result.cycles:
        if not cycle.passed:
            lines += ["", cycle.evidence(result.run_dir)]
    return "\n".join(lines)


def write_json(result: CampaignResult, options: dict[str, Any], path: Path | None = None) -> Path:
    """``powercut.json`` in the run directory (atomically replaced)."""
    path = path or result.run_dir / REPORT_NAME
    data = {
        "run": str(result.run_dir),
        "seed": result.seed,
        "nonce": result.nonce,
        "options": options,
        "passed": result.passed,
        "losses": result.losses,
        "seconds": round(result.seconds, 3),
        "final_pending": result.final_pending,
        "shard": list(result.shard),
        "error": result.error,
        "cycles": [cycle.to_json() for cycle in result.cycles],
    }
    return atomic.write_json(path, data)
