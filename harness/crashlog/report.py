"""What a ``crash-states`` run found: per guest run, the states judged by kind and the boots;
the table, the closing line, ``crash-states.json``, and the merge of shard reports.

The closing line is the verdict CI reads, always exactly one, always last::

    guest crash states: 12,345 judged, 3 booted, 0 failures

A run that could not be judged at all (the VM failed, the log disagrees with the console)
counts as a failure too: a campaign that judged nothing must not read as a pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

REPORT_NAME = "crash-states.json"
#: State kinds in table order (the generator's label says which one a state is).
KINDS = ("prefix", "subset", "torn call", "torn sector")


def kind_of(label: str) -> str:
    """The kind of a generated state, from its label (``w3 prefix 2/5``, ``w3 subset 0110``,
    ``w3 sample ...``, ``w3 all but 2/9``, ``w3 call 7 (8 sectors) torn: ...``, ``w3 prefix 1
    + write 1 torn at byte 8 ...``, ``w3 seeded 0: ... torn at byte 77``)."""
    if "torn at byte" in label:
        return "torn sector"
    if " call " in label:
        return "torn call"
    if " prefix " in label:
        return "prefix"
    return "subset"


@dataclass
class Failure:
    """One state the host or the guest judged wrong, and how to see it again."""

    seed: int
    label: str
    problem: str
    image: str = ""
    command: str = ""


@dataclass
class RunReport:
    """One recorded guest run and everything judged from it."""

    seed: int
    nonce: str = ""
    writes: int = 0
    entries: int = 0
    flushes: int = 0
    sectors: int = 0
    compactions: int = 0
    windows: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    judged: int = 0
    booted: int = 0
    failures: int = 0
    error: str = ""
    record_seconds: float = 0.0
    judge_seconds: float = 0.0
    boot_seconds: float = 0.0
    directory: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures and not self.error


@dataclass
class Report:
    """A whole run (or a merge of shard runs)."""

    shard: tuple[int, int] = (1, 1)
    options: dict[str, Any] = field(default_factory=dict)
    runs: list[RunReport] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    shards: list[tuple[int, int]] = field(default_factory=list)

    @property
    def judged(self) -> int:
        return sum(run.judged for run in self.runs)

    @property
    def booted(self) -> int:
        return sum(run.booted for run in self.runs)

    @property
    def failure_count(self) -> int:
        return sum(run.failures + bool(run.error) for run in self.runs)

    @property
    def passed(self) -> bool:
        """No failure, and something judged (a shard that was given no run passes alone; the
        merge of all shards then needs runs)."""
        return self.failure_count == 0 and (bool(self.runs) or self.shard[1] > 1)

    def summary_line(self) -> str:
        return (
            f"guest crash states: {self.judged:,} judged, {self.booted:,} booted, "
            f"{self.failure_count:,} failures"
        )


def table(report: Report) -> list[str]:
    """The per-run table, a totals row, then the failures (each with its command)."""
    head = ["seed", "writes", "flushes", "compact", "windows", *KINDS, "judged", "booted", "fail"]
    rows: list[list[Any]] = []
    for run in sorted(report.runs, key=lambda run: run.seed):
        rows.append(
            [run.seed, run.writes, run.flushes, run.compactions, run.windows]
            + [run.kinds.get(kind, 0) for kind in KINDS]
            + [run.judged, run.booted, run.failures + bool(run.error)]
        )
    if len(rows) > 1:
        total = ["all"] + [sum(row[i] for row in rows) for i in range(1, len(head))]
        rows.append(total)
    cells = [[str(c) if isinstance(c, str) else f"{c:,}" for c in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    if not rows:
        lines.append(f"(no guest run fell to shard {report.shard[0]}/{report.shard[1]})")
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    for run in report.runs:
        if run.error:
            lines.append(f"seed {run.seed}: not judged: {run.error} (evidence: {run.directory})")
    for failure in report.failures:
        lines.append(f"FAIL seed {failure.seed} {failure.label}: {failure.problem}")
        if failure.image:
            lines.append(f"     image {failure.image}")
        if failure.command:
            lines.append(f"     reproduce: {failure.command}")
    return lines


def write_report(report: Report, path: Path) -> Path:
    data = {
        "command": "crash-states",
        "shard": list(report.shard),
        "options": report.options,
        "judged": report.judged,
        "booted": report.booted,
        "failures": report.failure_count,
        "passed": report.passed,
        "seconds": round(report.seconds, 2),
        "runs": [asdict(run) for run in report.runs],
        "failed_states": [asdict(failure) for failure in report.failures],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def read_report(path: Path) -> Report:
    try:
        data = json.loads(Path(path).read_text())
        if data.get("command") != "crash-states":
            raise ConfigError(f"{path}: not a crash-states report")
        return Report(
            shard=tuple(data["shard"]),
            options=data["options"],
            runs=[RunReport(**run) for run in data["runs"]],
            failures=[Failure(**failure) for failure in data["failed_states"]],
            seconds=data["seconds"],
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable crash-states report: {exc}") from exc


def merge(reports: Iterable[Report]) -> Report:
    """One report from shard reports: every shard ``K/N`` of one ``N`` exactly once, with the
    same options; ConfigError otherwise (a missing shard must not pass as a smaller run)."""
    reports = list(reports)
    if not reports:
        raise ConfigError("nothing to merge")
    counts = {report.shard[1] for report in reports}
    if len(counts) != 1:
        raise ConfigError(f"shard reports of different splits: N in {sorted(counts)}")
    (count,) = counts
    got = sorted(report.shard[0] for report in reports)
    if got != list(range(1, count + 1)):
        raise ConfigError(f"shards of {count}: have {got}, need each of 1..{count} once")
    options = [{k: v for k, v in r.options.items() if k != "shard"} for r in reports]
    if any(option != options[0] for option in options):
        raise ConfigError("shard reports were run with different options")
    merged = Report(shard=(1, 1), options=options[0], shards=[r.shard for r in reports])
    for report in reports:
        merged.runs += report.runs
        merged.failures += report.failures
        merged.seconds = max(merged.seconds, report.seconds)
    return merged
