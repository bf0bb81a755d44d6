"""Reopen and replay: how long until a restarted statefsd serves, and what memory it needs.

Two questions, two measurements:

* **reopen** of 10,000 and 100,000 live keys, written one put per commit group (the plain
  journal a busy statefsd leaves), and after compaction (the snapshot it converges to): open
  the device, replay, and read one key back. Warm page cache is the figure (statefsd restarts
  on a disk it just used); a cold-cache open is reported next to it.
* **replay curve**: records = commit groups, from 1,000 to 1,000,000, in two series: the same
  1,000 keys overwritten (live set fixed: time must grow with the journal, memory must not) and
  all keys distinct (live set = records). Peak memory is taken with tracemalloc in a separate
  open, because tracing slows replay several times.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import journals
from bench.env import sample_load
from bench.stats import Figure
from guest.statefs import FileBlockDevice, Store

Say = Callable[[str], None]
FIXED_LIVE_KEYS = 1000


def open_and_serve(journal: journals.Journal) -> tuple[float, Store]:
    """Seconds from opening the device to the first key read back; returns the open store."""
    started = time.perf_counter()
    store = Store.open(FileBlockDevice(journal.path, sector_size=journal.sector_size))
    store.get(journal.probe_key)
    return time.perf_counter() - started, store


def peak_memory(journal: journals.Journal) -> int:
    """Peak bytes Python allocated while opening (tracemalloc), the live set included."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        _, store = open_and_serve(journal)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    store.close(sync=False)
    return peak


@dataclass
class Point:
    """One journal: its shape, the reopen times (warm and cold) and the peak memory."""

    label: str
    records: int
    live_keys: int
    journal_bytes: int
    warm: Figure
    cold: Figure
    peak_bytes: int
    build_seconds: float
    stats: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "records": self.records,
            "live_keys": self.live_keys,
            "journal_bytes": self.journal_bytes,
            "warm": self.warm.as_dict(),
            "cold": self.cold.as_dict(),
            "peak_bytes": self.peak_bytes,
            "peak_bytes_per_live_key": self.peak_bytes / max(self.live_keys, 1),
            "build_seconds": round(self.build_seconds, 3),
            **self.stats,
        }


def measure_point(journal: journals.Journal, label: str, runs: int) -> Point:
    warm = Figure(f"{label} warm open", "s")
    cold = Figure(f"{label} cold open", "s")
    stats: dict[str, object] = {}
    open_and_serve(journal)[1].close(sync=False)  # warm the cache once
    for _ in range(runs):
        load = sample_load()
        seconds, store = open_and_serve(journal)
        warm.add(seconds, load)
        stats = {
            "replay_records": store.replay.records,
            "replay_bytes_read": store.replay.bytes_read,
            "tail_reason": store.replay.tail_reason,
        }
        store.close(sync=False)
    for _ in range(max(1, runs // 2)):
        journals.drop_cache(journal.path)
        load = sample_load()
        seconds, store = open_and_serve(journal)
        cold.add(seconds, load)
        store.close(sync=False)
    return Point(
        label=label,
        records=journal.records,
        live_keys=journal.live_keys,
        journal_bytes=journal.journal_bytes,
        warm=warm,
        cold=cold,
        peak_bytes=peak_memory(journal),
        build_seconds=journal.build_seconds,
        stats=stats,
    )


def runs_for(records: int, runs: int) -> int:
    """Fewer repetitions for the biggest journals (seconds each), never fewer than 3."""
    return runs if records <= 100_000 else min(runs, 3)


def reopen_table(
    root: Path, live_counts: Sequence[int], runs: int, sector_size: int, say: Say
) -> list[Point]:
    """Plain journal and compacted snapshot of each live-key count."""
    points = []
    for live in live_counts:
        for compact in (False, True):
            kind = "compacted (after a clean stop)" if compact else "journal (crash recovery)"
            say(f"  reopen: {live:,} live keys, {kind}")
            path = root / f"reopen-{live}-{int(compact)}.img"
            journal = journals.build(
                path, records=live, live_keys=live, sector_size=sector_size, compact=compact
            )
            points.append(measure_point(journal, f"{live:,} keys, {kind}", runs_for(live, runs)))
            path.unlink()
    return points


def replay_curve(
    root: Path, record_counts: Sequence[int], runs: int, sector_size: int, say: Say
) -> dict[str, list[Point]]:
    """``fixed``: 1,000 live keys overwritten; ``distinct``: every record a new key."""
    curves: dict[str, list[Point]] = {"fixed": [], "distinct": []}
    for series in curves:
        for records in record_counts:
            live = min(FIXED_LIVE_KEYS, records) if series == "fixed" else records
            say(f"  replay curve ({series}): {records:,} records, {live:,} live keys")
            path = root / f"curve-{series}-{records}.img"
            journal = journals.build(path, records=records, live_keys=live, sector_size=sector_size)
            label = f"{series} {records:,}"
            curves[series].append(measure_point(journal, label, runs_for(records, runs)))
            path.unlink()
    return curves


def compaction_amplification(root: Path, live: int, sector_size: int) -> dict[str, float]:
    """Device bytes a compaction of ``live`` keys writes, per live key and per user byte."""
    path = root / f"amp-{live}-{sector_size}.img"
    journal = journals.build(path, records=live, live_keys=live, sector_size=sector_size)
    store = Store.open(journals.NoFlushFileDevice(path, sector_size=sector_size))
    before = store.counters["bytes_written"]
    store.compact()
    written = store.counters["bytes_written"] - before
    after = int(store.stats()["journal_bytes"])
    store.close(sync=False)
    path.unlink()
    return {
        "live_keys": live,
        "sector_size": sector_size,
        "journal_bytes_before": journal.journal_bytes,
        "journal_bytes_after": after,
        "compaction_bytes_written": written,
        "compaction_bytes_per_live_key": written / live,
        "journal_bytes_per_live_key_after": after / live,
    }
