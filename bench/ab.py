"""``python -m bench ab --kernel-arg ARG``: does a kernel-parameter change pay off?

A/B comparisons on this shared machine only mean something when interleaved: baseline and
variant contract runs alternate (A, B, A, B, ...), so a burst of someone else's load hits both
alike, and the verdict is the median of the per-pair differences, not the difference of two
medians taken minutes apart.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.contract_runs import ContractRun, run_once
from bench.env import describe_machine, sample_load
from bench.results import write_json
from bench.table import render
from harness.artifacts import create_unique_dir, default_runs_dir, new_run_id
from harness.contract.spec import Contract
from harness.image import ensure_image
from harness.vm.config import Accel

POINTS = ("init-started", "blk", "statefsd-ready", "keystored-ready")


def _summary(run: ContractRun) -> dict[str, float | None]:
    values: dict[str, float | None] = {"wall": run.wall}
    for boot in run.boots:
        for point in POINTS:
            values[f"boot{boot.number} {point}"] = boot.phases.get(point)
        values[f"boot{boot.number} qemu-exit"] = boot.exit_at
    return values


def main(
    *, kernel_args: Sequence[str], pairs: int, accel: Accel, results_dir: Path, say=print
) -> int:
    image = ensure_image("aarch64")
    contract = Contract.load()
    root = create_unique_dir(default_runs_dir(), f"bench-ab-{new_run_id()}")
    runs: dict[str, list[dict[str, float | None]]] = {"A": [], "B": []}
    passed = True
    for index in range(pairs):
        for label, args in (("A", ()), ("B", tuple(kernel_args))):
            run = run_once(image, contract, root / f"{label}-{index}", accel, args)
            passed = passed and run.passed
            runs[label].append(_summary(run))
            say(f"  pair {index + 1}/{pairs} {label}: {run.wall:.2f} s ({run.load.label()})")
    rows = []
    for key in runs["A"][0]:
        diffs = [
            b[key] - a[key]
            for a, b in zip(runs["A"], runs["B"], strict=True)
            if a.get(key) is not None and b.get(key) is not None
        ]
        base = [a[key] for a in runs["A"] if a.get(key) is not None]
        if diffs and base:
            rows.append(
                [
                    key,
                    f"{statistics.median(base):.2f}",
                    f"{statistics.median(diffs):+.3f}",
                    f"{min(diffs):+.2f}..{max(diffs):+.2f}",
                ]
            )
    say(f"\nA = contract as is; B = with {' '.join(kernel_args)}; {pairs} interleaved pairs")
    say(render(["seconds since launch", "A median", "B - A (median)", "B - A range"], rows))
    document: dict[str, Any] = {
        "kind": "ab",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": describe_machine().as_dict(),
        "load_after": asdict(sample_load(1.0)),
        "kernel_args": list(kernel_args),
        "runs": runs,
        "root": str(root),
    }
    say(f"\nwrote {write_json(results_dir, 'ab', document)}")
    return 0 if passed else 1
