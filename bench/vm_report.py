"""Tables and target verdicts for a ``vm`` result document (see :mod:`bench.vm`)."""

from __future__ import annotations

import math
import statistics
from typing import Any

from bench.guest_parse import ImportTime, direct_imports
from bench.stats import fmt_rate
from bench.table import render
from bench.targets import Verdict

Doc = dict[str, Any]
WALL_TARGET = 12.0
READY_TARGET = 3.5


def _median(values: list[float | None]) -> float:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(present) if present else float("nan")


def _passed_runs(doc: Doc) -> list[Doc]:
    return [run for run in doc["contract"] if run["passed"]] or doc["contract"]


def boot_phase_medians(doc: Doc) -> dict[int, list[tuple[str, float, float, float]]]:
    """``{boot: [(phase, median, min, max), ...]}`` sorted by median, QEMU exit last."""
    table: dict[int, list[tuple[str, float, float, float]]] = {}
    runs = _passed_runs(doc)
    numbers = sorted({boot["number"] for run in runs for boot in run["boots"]})
    for number in numbers:
        boots = [b for run in runs for b in run["boots"] if b["number"] == number]
        rows = []
        phases = {phase for b in boots for phase in b["phases"]}
        for phase in [*sorted(phases), "qemu-exit"]:
            values = [
                b["exit_at"] if phase == "qemu-exit" else b["phases"].get(phase) for b in boots
            ]
            present = [v for v in values if v is not None]
            if present:
                rows.append((phase, _median(present), min(present), max(present)))
        table[number] = sorted(rows, key=lambda row: row[1])
    return table


def walls(doc: Doc) -> dict[str, float]:
    runs = _passed_runs(doc)
    wall = [run["wall"] for run in runs]
    # What RUN_UNTIL_MARKER=1 (CI) would take: the last boot stops at its last required marker.
    until = []
    for run in runs:
        last = run["boots"][-1] if run["boots"] else {}
        if last.get("exit_at") and last.get("last_required_at"):
            until.append(run["wall"] - (last["exit_at"] - last["last_required_at"]))
    return {
        "median": _median(wall),
        "min": min(wall) if wall else float("nan"),
        "max": max(wall) if wall else float("nan"),
        "until_marker_median": _median(until),
        "runs": len(doc["contract"]),
        "passed": sum(1 for run in doc["contract"] if run["passed"]),
    }


def judge(doc: Doc) -> list[Verdict]:
    verdicts = [
        Verdict(
            "two-boot contract wall time (median, TCG) <= 12 s",
            walls(doc)["median"],
            WALL_TARGET,
            False,
            "s",
        )
    ]
    for number, rows in boot_phase_medians(doc).items():
        ready = next((row[1] for row in rows if row[0] == "statefsd-ready"), float("nan"))
        verdicts.append(
            Verdict(
                f"boot {number}: statefsd ready <= 3.5 s after launch (median)",
                ready,
                READY_TARGET,
                False,
                "s",
            )
        )
    return verdicts


def _timeline(doc: Doc) -> str:
    parts = []
    for number, rows in boot_phase_medians(doc).items():
        table_rows = []
        previous = 0.0
        for phase, median, low, high in rows:
            table_rows.append(
                [phase, f"{median:.2f}", f"+{median - previous:.2f}", f"{low:.2f}..{high:.2f}"]
            )
            previous = median
        parts.append(f"boot {number} (seconds since QEMU launch, median of passed runs)")
        parts.append(render(["phase", "median s", "step s", "range"], table_rows))
    return "\n".join(parts)


def _guest_rates(doc: Doc) -> dict[str, float]:
    """Median ops/s of each guest measurement over the throughput boots."""
    samples: dict[str, list[float]] = {}
    for boot in doc.get("throughput", {}).get("boots", []):
        for name, entries in boot["bench"].items():
            for entry in entries:
                if entry.get("seconds"):
                    samples.setdefault(name, []).append(entry["ops"] / entry["seconds"])
    return {name: _median(values) for name, values in samples.items()}


def _throughput(doc: Doc) -> str:
    if "throughput" not in doc:
        return ""
    rates = _guest_rates(doc)
    raw = rates.get("raw-4096")
    rows = []
    labels = (
        ("raw-4096", "raw disk: pwrite 4 KiB + fdatasync (physical limit in the guest)"),
        ("store-durable", "statefs in-process: put + sync"),
        ("statefsd-durable", "statefsd socket: put with SYNC (one round trip)"),
        ("store-batched", "statefs in-process: N puts, one sync"),
        ("statefsd-batched", "statefsd socket: N puts, one SYNC"),
        ("statefsd-batch-frame", "statefsd socket: one BATCH frame of N puts"),
        ("store-get", "statefs in-process: get"),
        ("statefsd-get", "statefsd socket: get"),
    )
    for name, label in labels:
        if name in rates:
            ratio = f"{rates[name] / raw:.2f}x" if raw else "-"
            rows.append([label, fmt_rate(rates[name]), ratio])
    powercut = doc["throughput"].get("powercut") or {}
    if "guest_rate" in powercut:
        rows.append(
            [
                "powercut workload (3-op batch + 2 console lines), guest clock",
                fmt_rate(powercut["guest_rate"]),
                _ratio(powercut["guest_rate"], raw),
            ]
        )
    if "host_rate" in powercut:
        rows.append(
            [
                "powercut workload, from 'acked' host arrival times",
                fmt_rate(powercut["host_rate"]),
                _ratio(powercut["host_rate"], raw),
            ]
        )
    ops = doc["throughput"]["ops"]
    title = (
        f"Guest throughput (TCG, N = {ops}, median of {len(doc['throughput']['boots']) // 2} boots)"
    )
    return title + "\n" + render(["", "ops/s", "x raw disk"], rows)


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "-"


def _kernel_rows(profile: Doc) -> list[list[str]]:
    kernel = profile["kernel"]
    if not kernel:
        return []
    # Lines before the console driver registers are flushed late, all at once; the "Run /init"
    # line is printed live, so its host time minus its kernel time is when the clock started.
    live = next((e for e in kernel if "Run /init" in e["text"]), kernel[-1])
    offset = (live["host"] or 0.0) - live["kernel"]
    rows = [["QEMU launch -> kernel clock starts (host)", f"{offset:.2f}"]]
    for needle, label in (
        ("Trying to unpack rootfs", "initramfs unpack starts"),
        ("Freeing initrd memory", "initramfs unpacked"),
        ("Run /init as init process", "kernel runs /init"),
    ):
        event = next((e for e in kernel if needle in e["text"]), None)
        if event:
            rows.append([f"{label} (kernel clock)", f"{event['kernel']:.2f}"])
            rows.append([f"{label} (host)", f"{event['kernel'] + offset:.2f}"])
    for key, label in (
        ("init_started", "'init: started' (host)"),
        ("script_started", "script's first line, after insmod x3 (host)"),
    ):
        if profile.get(key) is not None:
            rows.append([label, f"{profile[key]:.2f}"])
    return rows


GUEST_MEASUREMENTS = (
    ("busybox-true", "spawn /bin/busybox true (one mount or insmod costs about this)"),
    ("python-bare", "fresh interpreter, -ISB -c pass"),
    ("python-import-pid1", "fresh interpreter importing guest.init.pid1 (what /init does)"),
    ("python-import-contract", "fresh interpreter importing guest.init.contract"),
    ("import-ecdsa", "import ecdsa (keystored's Ed25519)"),
    ("ed25519-derive", "first Ed25519 key derivation (builds the precomputed table)"),
    ("ed25519-derive-again", "second derivation"),
    ("ed25519-sign", "one signature"),
    ("store-open-default", "Store.open, 6 records, default record limit"),
    ("store-open-1m", "Store.open, 6 records, record limit 1 MiB (statefsd's largest frame)"),
    ("store-open-256k", "Store.open, 6 records, record limit 256 KiB"),
    ("store-open-min", "Store.open, 6 records, smallest record limit"),
)


def _profile(doc: Doc) -> str:
    profile = doc.get("profile")
    if not profile:
        return ""
    lines = ["Guest start-up profile"]
    rows = _kernel_rows(profile)
    if rows:
        lines.append(render(["boot without 'quiet' (seconds)", "s"], rows))
    bench = profile["bench"]
    rows = []
    for name, label in GUEST_MEASUREMENTS:
        values = [e["seconds"] for e in bench.get(name, []) if "seconds" in e]
        if values:
            rows.append([label, f"{_median(values) * 1000:.0f}", str(len(values))])
    limits = {k: v[0]["bytes"] for k, v in bench.items() if k.startswith("record-limit-")}
    if limits:
        rows.append(
            [
                "record limits: " + ", ".join(f"{k[13:]} {v:,.0f} B" for k, v in limits.items()),
                "",
                "",
            ]
        )
    lines.append(render(["guest measurement", "median ms", "n"], rows))
    calls = profile.get("initcalls") or {}
    if calls.get("slowest"):
        rows = [[name, f"{us / 1000:.0f}"] for name, us in calls["slowest"][:10]]
        lines.append(
            f"Kernel initcalls (initcall_debug, printing included): {calls['count']} calls, "
            f"{calls['total_us'] / 1000:.0f} ms in all; the slowest"
        )
        lines.append(render(["initcall", "ms"], rows))
    for root, tree in profile.get("importtime", {}).items():
        lines += _import_tree(root, tree)
    return "\n".join(lines)


def _import_tree(root: str, tree: list[Doc]) -> list[str]:
    rows = [ImportTime(**row) for row in tree]
    total = next((r.cumulative_us for r in rows if r.module == root and r.depth == 0), 0)
    startup = sum(r.cumulative_us for r in rows if r.depth == 0 and r.module != root)
    children = sorted(direct_imports(rows, root), key=lambda r: r.cumulative_us, reverse=True)
    heavy = sorted(rows, key=lambda r: r.self_us, reverse=True)[:10]
    table = [[f"  {r.module}", f"{r.cumulative_us / 1000:.0f}", ""] for r in children[:10]]
    table += [[f"  {r.module}", "", f"{r.self_us / 1000:.0f}"] for r in heavy]
    title = (
        f"-X importtime, 'import {root}' in the guest: {total / 1000:.0f} ms (interpreter "
        f"start-up imports {startup / 1000:.0f} ms more); what it imports directly, then "
        f"the largest self times"
    )
    return [title, render(["module", "cumulative ms", "self ms"], table)]


def render_report(doc: Doc) -> str:
    machine = doc["machine"]
    wall = walls(doc)
    before, after = doc["load_before"]["loadavg1"], doc["load_after"]["loadavg1"]
    saved = wall["median"] - wall["until_marker_median"]
    lines = [
        f"statefs-qemu VM benchmark, {doc.get('arch', 'aarch64')} guest, {doc['started']} "
        f"({doc['accel']}; {machine['cpus']} cores, "
        f"{machine['memory_gib']:.0f} GiB, {machine['os']}, Python {machine['python']}; "
        f"load before {before:.2f}, after {after:.2f})",
        "",
        f"Two-boot contract: {wall['passed']}/{wall['runs']} runs passed; wall time median "
        f"{wall['median']:.2f} s (range {wall['min']:.2f}..{wall['max']:.2f}); with "
        f"RUN_UNTIL_MARKER=1 the last boot would stop {saved:.2f} s earlier: "
        f"{wall['until_marker_median']:.2f} s",
        "loads per run: " + ", ".join(f"{run['load']['loadavg1']:.1f}" for run in doc["contract"]),
        _timeline(doc),
        "",
        _throughput(doc),
        "",
        _profile(doc),
        "",
        "Targets",
    ]
    fields = ("target", "measured", "bound", "higher_is_better", "unit", "note")
    for verdict in doc["targets"]:
        lines.append("  " + Verdict(**{k: verdict[k] for k in fields}).describe())
    return "\n".join(lines)
