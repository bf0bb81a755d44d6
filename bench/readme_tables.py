"""``python -m bench tables``: the latest results as markdown, for ``bench/README.md``.

The README's tables are pasted from this output, so every figure there is one a result file
in ``bench/results/`` holds (with its samples and the load it was measured under).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.results import latest
from bench.stats import fmt_bytes, fmt_rate, fmt_seconds
from bench.store_report import LABELS, paired_ratio
from bench.table import markdown
from bench.vm_report import _guest_rates, boot_phase_medians, walls

Doc = dict[str, Any]


def store_tables(doc: Doc) -> str:
    tp = doc["throughput"]
    physical = tp["physical"]["4096"]
    rows = []
    for block, fig in tp["physical"].items():
        rows.append(
            [
                f"physical: pwrite {block} B + fdatasync",
                fmt_rate(fig["median"]),
                f"{paired_ratio(fig, physical):.2f}x",
                "",
                "",
                "",
            ]
        )
    for name in tp["durable"]:
        durable, batched, gets = tp["durable"][name], tp["batched"][name], tp["gets"][name]
        rows.append(
            [
                LABELS.get(name, name),
                fmt_rate(durable["median"]),
                f"{paired_ratio(durable, physical):.2f}x",
                fmt_rate(batched["median"]),
                f"{paired_ratio(batched, physical):.0f}x",  # per-run ratios, like durable
                fmt_rate(gets["median"]),
            ]
        )
    headers = ["store", "durable puts/s", "x physical", "batched puts/s", "x physical", "gets/s"]
    parts = [markdown(headers, rows)]
    rows = [
        [
            p["label"],
            fmt_seconds(p["warm"]["median"]),
            fmt_seconds(p["cold"]["median"]),
            fmt_bytes(p["peak_bytes"]),
        ]
        for p in doc["reopen"]
    ]
    parts.append(
        markdown(
            ["reopen (open + replay + first get)", "warm cache", "cold cache", "peak memory"], rows
        )
    )
    rows = []
    for series, points in doc["replay_curve"].items():
        for p in points:
            warm = p["warm"]["median"]
            rows.append(
                [
                    series,
                    f"{p['records']:,}",
                    f"{p['live_keys']:,}",
                    fmt_bytes(p["journal_bytes"]),
                    fmt_seconds(warm),
                    f"{warm / p['records'] * 1e6:.1f}",
                    fmt_bytes(p["peak_bytes"]),
                ]
            )
    parts.append(
        markdown(
            ["series", "records", "live keys", "journal", "replay", "us/record", "peak memory"],
            rows,
        )
    )
    rows = []
    for name, amp in tp["amplification"].items():
        device = amp.get("device_bytes_per_put")
        syscall = amp.get("syscall_bytes_per_put", float("nan"))
        rows.append(
            [
                LABELS.get(name, name),
                "-" if device is None else f"{device:,.0f}",
                f"{syscall:,.0f}",
                f"{syscall / 320:.1f}x",
            ]
        )
    parts.append(
        markdown(
            ["durable put", "device B/put (store counter)", "write(2) B/put", "x user bytes (320)"],
            rows,
        )
    )
    return "\n\n".join(parts)


def verdicts(doc: Doc) -> str:
    rows = []
    for v in doc["targets"]:
        rows.append(
            [v["target"], "met" if v["met"] else "**missed**", _show(v), _show(v, bound=True)]
        )
    return markdown(["target", "verdict", "measured", "bound"], rows)


def _show(v: Doc, *, bound: bool = False) -> str:
    value = v["bound"] if bound else v["measured"]
    if v["unit"] == "ops/s":
        return fmt_rate(value)
    if v["unit"] == "s":
        return fmt_seconds(value)
    return f"{value:.2f}x"


def vm_tables(doc: Doc) -> str:
    wall = walls(doc)
    parts = [
        f"Two-boot contract: {wall['passed']}/{wall['runs']} passed, median {wall['median']:.2f} s "
        f"(range {wall['min']:.2f}..{wall['max']:.2f} s); until-marker equivalent "
        f"{wall['until_marker_median']:.2f} s."
    ]
    medians = boot_phase_medians(doc)
    first: dict[str, float] = {}  # each phase's earliest median over the boots: the row order
    for boot_rows in medians.values():
        for phase, median, *_ in boot_rows:
            first[phase] = min(median, first.get(phase, median))
    phases = [*sorted((p for p in first if p != "qemu-exit"), key=first.__getitem__), "qemu-exit"]
    rows = []
    for phase in phases:
        cells = [phase]
        for number in sorted(medians):
            found = next((row for row in medians[number] if row[0] == phase), None)
            cells.append("-" if found is None else f"{found[1]:.2f}")
        rows.append(cells)
    parts.append(
        markdown(
            ["phase (s since QEMU launch, median)", *[f"boot {n}" for n in sorted(medians)]], rows
        )
    )
    rates = _guest_rates(doc)
    raw = rates.get("raw-4096")
    rows = [
        [name, fmt_rate(rate), f"{rate / raw:.2f}x" if raw else "-"]
        for name, rate in rates.items()
        if name != "store-open"  # one open, not a rate
    ]
    parts.append(markdown(["guest measurement", "ops/s", "x raw disk"], rows))
    return "\n\n".join(parts)


def main(results_dir: Path, say=print) -> int:
    for name, render in (("store", store_tables), ("vm", vm_tables)):
        doc = latest(results_dir, name)
        if doc is None:
            say(f"(no {name} results in {results_dir})")
            continue
        say(f"## {name} ({doc.get('started', '?')})\n")
        say(render(doc))
        say("")
        say(verdicts(doc))
        say("")
    return 0
