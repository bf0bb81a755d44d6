"""``python -m harness powercut merge R1.json R2.json ...``: one verdict from shard reports.

Each shard of a campaign (``--shard K/N``) is a campaign of its own on its own disk; merging
their ``powercut.json`` files gives the whole campaign's cycles, cuts by trigger, pending writes
per cut, compactions and losses, and one closing line. A set that misses a shard, repeats one,
or mixes campaign options is refused: a missing shard must not pass as a smaller campaign.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

#: Options that differ between shards by design.
_PER_SHARD = ("shard", "keep_artifacts", "nbdkit_verbose")


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
        missing = [key for key in ("cycles", "options", "passed") if key not in data]
        if missing:
            raise KeyError(", ".join(missing))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable power-cut report: {exc}") from exc
    return data


def merge_reports(paths: list[Path]) -> dict[str, Any]:
    """The merged campaign: ``cycles`` (each tagged with its shard), ``passed``, ``shards``."""
    reports = [_load(path) for path in paths]
    if not reports:
        raise ConfigError("merge needs shard reports (powercut.json files)")
    shards = [tuple(report.get("shard", (1, 1))) for report in reports]
    counts = {count for _, count in shards}
    if len(counts) != 1:
        raise ConfigError(f"shard reports of different splits: N in {sorted(counts)}")
    (count,) = counts
    if sorted(index for index, _ in shards) != list(range(1, count + 1)):
        raise ConfigError(f"shards of {count}: have {sorted(shards)}, need each of 1..{count} once")
    options = [{k: v for k, v in r["options"].items() if k not in _PER_SHARD} for r in reports]
    if any(option != options[0] for option in options):
        raise ConfigError("shard reports were run with different campaign options")
    cycles = []
    for report, (index, _) in zip(reports, shards, strict=True):
        cycles += [dict(cycle, shard=index) for cycle in report["cycles"]]
    errors = [
        f"shard {index}: {report['error']}"
        for report, (index, _) in zip(reports, shards, strict=True)
        if report.get("error")
    ]
    return {
        "cycles": cycles,
        "passed": all(report["passed"] for report in reports),
        "errors": errors,
        "shards": count,
        "seconds": max(report.get("seconds", 0.0) for report in reports),
    }


def summary(merged: dict[str, Any]) -> list[str]:
    """The merged campaign in a few lines, the verdict last."""
    cycles = merged["cycles"]
    verdicts = Counter(cycle["verdict"] for cycle in cycles)
    triggers = Counter(cycle["cut_trigger"] or "-" for cycle in cycles)
    pending = [cycle["pending"] for cycle in cycles] or [0]
    lines = [
        f"{merged['shards']} shards, {len(cycles)} cycles; slowest shard {merged['seconds']:.0f} s",
        "cuts by trigger: " + ", ".join(f"{t} {n}" for t, n in sorted(triggers.items())),
        f"pending writes per cut: max {max(pending)}, mean {statistics.fmean(pending):.1f}; "
        f"compacted during {sum(1 for c in cycles if c['compacted'])} cycles",
        *merged["errors"],
    ]
    losses = verdicts.get("LOSS", 0)
    verdict = "PASSED" if merged["passed"] else "FAILED"
    lines.append(
        f"power-cut campaign {verdict}: {len(cycles)} cycles, {losses} losses "
        f"({', '.join(f'{v} {n}' for v, n in sorted(verdicts.items())) or 'none'})"
    )
    return lines
