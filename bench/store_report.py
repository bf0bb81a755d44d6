"""Turn a ``store`` result document into tables and target verdicts.

Works on the JSON document (not on live objects), so the README and any later re-rendering
use exactly what was written to ``bench/results/``.
"""

from __future__ import annotations

import itertools
import statistics
from typing import Any

from bench.data import KEY_BYTES, VALUE_BYTES
from bench.stats import fmt_bytes, fmt_rate, fmt_seconds
from bench.table import render
from bench.targets import Verdict

Doc = dict[str, Any]

LABELS = {
    "statefs-512": "statefs, 512 B sectors",
    "statefs-4096": "statefs, 4096 B sectors",
    "sqlite3": "sqlite3 WAL, synchronous=FULL",
    "lmdb": "lmdb, sync=True",
}


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _load(figure: Doc) -> str:
    if figure.get("loadavg1_max") is None:
        return "-"
    busy = "?" if figure.get("busy_max") is None else f"{figure['busy_max'] * 100:.0f}%"
    return f"{figure['loadavg1_max']:.1f}/{busy}"


def _ratio(value: float, base: float | None) -> str:
    return "-" if not base or value != value else f"{value / base:.2f}x"


def paired_ratio(figure: Doc, physical: Doc) -> float:
    """Median over runs of (this run's figure / this run's physical limit): load that hits
    one run hits both, so this is steadier than the ratio of the two medians."""
    if len(figure["samples"]) != len(physical["samples"]):
        return figure["median"] / physical["median"]
    pairs = [a / b for a, b in zip(figure["samples"], physical["samples"], strict=True) if b]
    return statistics.median(pairs) if pairs else float("nan")


def _rate_table(doc: Doc, section: str, *, with_physical: bool) -> str:
    tp = doc["throughput"]
    physical = tp["physical"]["4096"]
    sqlite = tp[section].get("sqlite3", {}).get("median")
    figures = list(tp[section].items())
    if with_physical:
        figures = [(f"physical-{block}", fig) for block, fig in tp["physical"].items()] + figures
    rows = []
    for name, figure in figures:
        if name.startswith("physical-"):
            label = f"physical: pwrite {name.split('-')[1]} B + fdatasync"
        else:
            label = _label(name)
        rows.append(
            [
                label,
                fmt_rate(figure["median"]),
                fmt_rate(max(figure["samples"])),
                f"{paired_ratio(figure, physical):.2f}x",
                "-" if name.startswith("physical") else _ratio(figure["median"], sqlite),
                f"{figure['spread'] * 100:.0f}%",
                _load(figure),
            ]
        )
    headers = ["", "median/s", "best/s", "x physical", "x sqlite3", "spread", "load/busy"]
    return render(headers, rows)


def _typical_table(doc: Doc) -> str:
    """Durable puts as 1 / median latency: the cost of a typical put, which the bursts of
    other processes' I/O on a shared disk (a few fdatasyncs stalled for milliseconds) move far
    less than the throughput."""
    typical = doc["throughput"].get("typical", {})
    physical = typical.get("physical-4096")
    sqlite = typical.get("sqlite3")
    if not physical:
        return ""
    rows = []
    for name, figure in typical.items():
        label = (
            f"physical: pwrite {name[9:]} B + fdatasync"
            if name.startswith("physical-")
            else _label(name)
        )
        rows.append(
            [
                label,
                fmt_rate(figure["median"]),
                f"{1e6 / figure['median']:.0f}",
                f"{paired_ratio(figure, physical):.2f}x",
                "-"
                if name.startswith("physical") or not sqlite
                else f"{paired_ratio(figure, sqlite):.2f}x",
            ]
        )
    headers = ["", "typical/s", "median us", "x physical", "x sqlite3"]
    return render(headers, rows)


def _reopen_table(doc: Doc) -> str:
    rows = []
    for point in doc["reopen"]:
        rows.append(
            [
                point["label"],
                f"{point['records']:,}",
                fmt_bytes(point["journal_bytes"]),
                fmt_seconds(point["warm"]["median"]),
                fmt_seconds(point["cold"]["median"]),
                fmt_bytes(point["peak_bytes"]),
                _load(point["warm"]),
            ]
        )
    headers = [
        "live keys, journal",
        "records",
        "journal",
        "warm",
        "cold cache",
        "peak mem",
        "load/busy",
    ]
    return render(headers, rows)


def _curve_table(doc: Doc) -> str:
    rows = []
    for series, points in doc["replay_curve"].items():
        for point in points:
            warm = point["warm"]["median"]
            rows.append(
                [
                    series,
                    f"{point['records']:,}",
                    f"{point['live_keys']:,}",
                    fmt_bytes(point["journal_bytes"]),
                    fmt_seconds(warm),
                    f"{warm / point['records'] * 1e6:.2f}",
                    f"{point['journal_bytes'] / warm / (1 << 20):.0f}",
                    fmt_bytes(point["peak_bytes"]),
                    f"{point['peak_bytes_per_live_key']:.0f}",
                ]
            )
    headers = [
        "series",
        "records",
        "live keys",
        "journal",
        "replay",
        "us/record",
        "MiB/s",
        "peak mem",
        "B/live key",
    ]
    return render(headers, rows)


def _amplification_table(doc: Doc) -> str:
    user = KEY_BYTES + VALUE_BYTES
    rows = []
    for name, amp in doc["throughput"]["amplification"].items():
        device = amp.get("device_bytes_per_put")
        os_bytes = amp.get("syscall_bytes_per_put")
        rows.append(
            [
                _label(name),
                "-" if device is None else f"{device:,.0f}",
                "-" if device is None else f"{device / user:.1f}x",
                "-" if os_bytes is None else f"{os_bytes:,.0f}",
                "-" if os_bytes is None else f"{os_bytes / user:.1f}x",
                "-"
                if amp.get("compactions_per_1000_puts") is None
                else f"{amp['compactions_per_1000_puts']:.1f}",
            ]
        )
    headers = [
        "durable put (put + sync)",
        "device B/put",
        "x user",
        "write(2) B/put",
        "x user",
        "compactions/1000",
    ]
    text = render(headers, rows)
    rows = []
    for comp in doc["compaction"]:
        rows.append(
            [
                f"compaction of {comp['live_keys']:,} keys, {comp['sector_size']} B sectors",
                f"{comp['compaction_bytes_per_live_key']:,.0f}",
                f"{comp['compaction_bytes_per_live_key'] / user:.2f}x",
                fmt_bytes(comp["journal_bytes_before"]),
                fmt_bytes(comp["journal_bytes_after"]),
            ]
        )
    headers = ["after compaction", "B/live key", "x user", "journal before", "journal after"]
    return text + "\n\n" + render(headers, rows)


def judge(doc: Doc) -> list[Verdict]:
    """The issue's targets against this document (targets whose data is missing are skipped)."""
    tp = doc["throughput"]
    sqlite_durable = tp["durable"].get("sqlite3")
    verdicts = []
    for name, figure in tp["durable"].items():
        if not name.startswith("statefs"):
            continue
        verdicts.append(
            Verdict(
                f"durable puts >= 0.8x physical ({name})",
                paired_ratio(figure, tp["physical"]["4096"]),
                0.8,
                True,
                "x",
                note="median of per-run ratios",
            )
        )
        if sqlite_durable:
            verdicts.append(
                Verdict(
                    f"durable puts >= 1.3x sqlite3 WAL FULL ({name})",
                    paired_ratio(figure, sqlite_durable),
                    1.3,
                    True,
                    "x",
                    note="median of per-run ratios",
                )
            )
    typical = tp.get("typical", {})
    for name, figure in typical.items():
        if name.startswith("statefs") and "physical-4096" in typical:
            verdicts.append(
                Verdict(
                    f"durable puts >= 0.8x physical, typical put ({name})",
                    paired_ratio(figure, typical["physical-4096"]),
                    0.8,
                    True,
                    "x",
                    note="1 / median latency",
                )
            )
        if name.startswith("statefs") and "sqlite3" in typical:
            verdicts.append(
                Verdict(
                    f"durable puts >= 1.3x sqlite3 WAL FULL, typical put ({name})",
                    paired_ratio(figure, typical["sqlite3"]),
                    1.3,
                    True,
                    "x",
                    note="1 / median latency",
                )
            )
    for name, figure in tp["batched"].items():
        if name.startswith("statefs"):
            verdicts.append(
                Verdict(
                    f"batched puts >= 300k/s ({name})", figure["median"], 300_000, True, "ops/s"
                )
            )
    for name, figure in tp["gets"].items():
        if name.startswith("statefs"):
            verdicts.append(
                Verdict(f"gets >= 1M/s ({name})", figure["median"], 1_000_000, True, "ops/s")
            )
    for point in doc["reopen"]:
        if point["live_keys"] == 10_000:
            verdicts.append(
                Verdict(
                    f"reopen of {point['label']} <= 20 ms",
                    point["warm"]["median"],
                    0.020,
                    False,
                    "s",
                    note="warm cache",
                )
            )
    verdicts += _curve_verdicts(doc)
    return verdicts


def marginal_seconds_per_record(points: list[Doc]) -> list[float]:
    """Replay time added per added record between consecutive points from 10,000 records on
    (the fixed part of an open, a few milliseconds, cancels out)."""
    ordered = [p for p in sorted(points, key=lambda p: p["records"]) if p["records"] >= 10_000]
    return [
        (b["warm"]["median"] - a["warm"]["median"]) / (b["records"] - a["records"])
        for a, b in itertools.pairwise(ordered)
    ]


def marginal_bytes_per_key(points: list[Doc]) -> list[float]:
    """Peak memory added per added live key between consecutive points of the distinct
    series (the fixed part, a largest record's read window, cancels out)."""
    ordered = sorted(points, key=lambda p: p["live_keys"])
    return [
        (b["peak_bytes"] - a["peak_bytes"]) / (b["live_keys"] - a["live_keys"])
        for a, b in itertools.pairwise(ordered)
        if b["live_keys"] > a["live_keys"] and b["live_keys"] >= 10_000
    ]


def _curve_verdicts(doc: Doc) -> list[Verdict]:
    fixed = doc["replay_curve"].get("fixed", [])
    distinct = doc["replay_curve"].get("distinct", [])
    verdicts = []
    marginal = marginal_seconds_per_record(fixed)
    if len(marginal) >= 2:
        verdicts.append(
            Verdict(
                "replay linear in journal size (max/min marginal replay time per added record)",
                max(marginal) / min(marginal),
                1.5,
                False,
                "x",
                note=f"{min(marginal) * 1e6:.1f}..{max(marginal) * 1e6:.1f} us per record, "
                "1,000 live keys",
            )
        )
    if len(fixed) >= 2:
        peaks = [p["peak_bytes"] for p in fixed if p["live_keys"] == fixed[-1]["live_keys"]]
        verdicts.append(
            Verdict(
                "memory independent of records (peak at most / fewest records, same live set)",
                max(peaks) / min(peaks),
                1.5,
                False,
                "x",
            )
        )
    marginal = marginal_bytes_per_key(distinct)
    if len(marginal) >= 2:
        verdicts.append(
            Verdict(
                "memory proportional to live keys (max/min marginal peak bytes per added live key)",
                max(marginal) / min(marginal),
                1.5,
                False,
                "x",
                note=f"{min(marginal):.0f}..{max(marginal):.0f} B per key",
            )
        )
    return verdicts


def render_report(doc: Doc) -> str:
    machine = doc["machine"]
    fs = doc["filesystem"]
    cfg = doc["config"]
    sizes = cfg["sizes"]
    dirty = f" + {machine['dirty_files']} uncommitted files" if machine["dirty_files"] else ""
    lines = [
        f"statefs host benchmark, {doc['started']}",
        f"machine: {machine['cpus']} cores ({machine['cpu_model']}), "
        f"{machine['memory_gib']:.0f} GiB, {machine['os']}, Linux {machine['kernel']}, "
        f"Python {machine['python']}; commit {machine['commit']}{dirty}",
        f"device directory: {fs['path']} on {fs['device']} ({fs['type']}, {fs['options']}; "
        f"stat -f: {fs['stat_f']})",
        f"{cfg['key_bytes']}-byte keys, {cfg['value_bytes']}-byte values, seed {cfg['seed']}, "
        f"median of {cfg['runs']} runs; load before {doc['load_before']['loadavg1']:.2f}, "
        f"after {doc['load_after']['loadavg1']:.2f}",
        "",
        f"Durable writes: one commit + fdatasync each ({sizes['durable']} per sample); "
        "x physical = median over runs of the ratio to pwrite 4 KiB + fdatasync in the same run",
        _rate_table(doc, "durable", with_physical=True),
        "",
        "Durable writes as 1 / median latency per put (steadier on a shared disk)",
        _typical_table(doc),
        "",
        f"Batched puts: {sizes['batch']:,} puts, one commit",
        _rate_table(doc, "batched", with_physical=False),
        "",
        f"Gets: {sizes['gets']:,} random lookups among the {sizes['batch']:,} keys",
        _rate_table(doc, "gets", with_physical=False),
        "",
        f"Reopen: open + replay + first get, {cfg['journal_sector_size']} B sectors "
        "(journal = one put per commit group, as a crash leaves it; a clean stop compacts)",
        _reopen_table(doc),
        "",
        "Replay curve: records = commit groups of one put; fixed = 1,000 live keys overwritten",
        _curve_table(doc),
        "",
        f"Write amplification (user bytes per put = {KEY_BYTES + VALUE_BYTES})",
        _amplification_table(doc),
        "",
        "Targets",
    ]
    fields = ("target", "measured", "bound", "higher_is_better", "unit", "note")
    for verdict in doc["targets"]:
        lines.append("  " + Verdict(**{k: verdict[k] for k in fields}).describe())
    return "\n".join(lines)
