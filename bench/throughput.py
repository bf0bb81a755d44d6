"""Durable puts, batched puts and gets, for every engine, against the physical limit.

Runs are interleaved (run 1 of every engine, then run 2 of every engine, ...) and the physical
limit is measured inside each run, so a burst of load from someone else's test run hits every
engine alike instead of ruining one column; each engine gets a fresh, empty store per run.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import physical
from bench.data import Dataset
from bench.engines import open_engine
from bench.env import sample_load
from bench.procio import written_bytes
from bench.stats import Figure, rate

Say = Callable[[str], None]
PHYSICAL_BLOCKS = (4096, 512)


@dataclass
class ThroughputSizes:
    """How much work one sample does (the toy sizes keep the smoke test in seconds)."""

    durable: int = 500
    batch: int = 10_000
    gets: int = 10_000
    get_rounds: int = 5
    statefs_device_bytes: int = 64 << 20


@dataclass
class Throughput:
    physical: dict[int, Figure] = field(default_factory=dict)
    durable: dict[str, Figure] = field(default_factory=dict)
    #: 1 / median per-put latency: what a put typically costs, insensitive to the bursts of
    #: other processes' I/O that stall a few fdatasyncs for milliseconds on this shared disk.
    typical: dict[str, Figure] = field(default_factory=dict)
    batched: dict[str, Figure] = field(default_factory=dict)
    gets: dict[str, Figure] = field(default_factory=dict)
    #: engine -> {"device_bytes_per_put": ..., "syscall_bytes_per_put": ...} (durable loop)
    amplification: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "physical": {str(k): v.as_dict() for k, v in self.physical.items()},
            "durable": {k: v.as_dict() for k, v in self.durable.items()},
            "typical": {k: v.as_dict() for k, v in self.typical.items()},
            "batched": {k: v.as_dict() for k, v in self.batched.items()},
            "gets": {k: v.as_dict() for k, v in self.gets.items()},
            "amplification": self.amplification,
        }


def _figure(table: dict, key: object, name: str) -> Figure:
    if key not in table:
        table[key] = Figure(name, "ops/s")
    return table[key]


def _record(result: Throughput, key: str, started: float, stamps: list[float], load) -> float:
    """Add the typical rate (1 / median latency) of a durable loop; return its throughput."""
    latencies = [b - a for a, b in zip([started, *stamps], stamps, strict=False)]
    typical = 1.0 / statistics.median(latencies)
    _figure(result.typical, key, f"{key} typical (1 / median latency)").add(typical, load)
    return rate(len(stamps), stamps[-1] - started)


def _physical_run(directory: Path, sizes: ThroughputSizes, result: Throughput) -> None:
    path = directory / "physical.bin"
    physical.preallocate(path)
    for block in PHYSICAL_BLOCKS:
        load = sample_load()
        started, stamps = physical.durable_writes(path, block, sizes.durable)
        ops = _record(result, f"physical-{block}", started, stamps, load)
        _figure(result.physical, block, f"pwrite {block} B + fdatasync").add(ops, load)
    path.unlink()


def _durable_run(
    name: str, directory: Path, data: Dataset, sizes: ThroughputSizes, result: Throughput
) -> None:
    engine = open_engine(name, directory, statefs_device_bytes=sizes.statefs_device_bytes)
    count = sizes.durable
    items = [(engine.key(k), v) for k, v in zip(data.keys[:count], data.values, strict=False)]
    load = sample_load()
    os_before = written_bytes()
    started = time.perf_counter()
    stamps = engine.durable_puts(items)
    os_after = written_bytes()
    ops = _record(result, name, started, stamps, load)
    _figure(result.durable, name, f"{name} durable put").add(ops, load)
    amp = result.amplification.setdefault(name, {"samples": 0})
    counters = engine.counters()
    runs = amp["samples"]
    for metric, value in (
        (
            "device_bytes_per_put",
            counters.get("bytes_written", 0) / len(items) if counters else None,
        ),
        (
            "syscall_bytes_per_put",
            (os_after - os_before) / len(items)
            if os_before is not None and os_after is not None
            else None,
        ),
        (
            "compactions_per_1000_puts",
            counters.get("compactions", 0) * 1000 / len(items) if counters else None,
        ),
    ):
        if value is not None:  # running mean over the runs
            amp[metric] = (amp.get(metric, 0.0) * runs + value) / (runs + 1)
    amp["samples"] = runs + 1
    engine.close()


def _batch_and_get_run(
    name: str, directory: Path, data: Dataset, sizes: ThroughputSizes, result: Throughput
) -> None:
    engine = open_engine(name, directory, statefs_device_bytes=sizes.statefs_device_bytes)
    count = sizes.batch
    items = [(engine.key(k), v) for k, v in zip(data.keys[:count], data.values, strict=False)]
    load = sample_load()
    started = time.perf_counter()
    engine.batched_puts(items)
    elapsed = time.perf_counter() - started
    _figure(result.batched, name, f"{name} batched put").add(rate(count, elapsed), load)
    lookups = [engine.key(k) for k in data.lookups(sizes.gets, among=count)]
    for _ in range(sizes.get_rounds):
        started = time.perf_counter()
        engine.gets(lookups)
        elapsed = time.perf_counter() - started
        _figure(result.gets, name, f"{name} get").add(rate(len(lookups), elapsed), load)
    engine.close()


def measure(
    root: Path,
    engines: Sequence[str],
    data: Dataset,
    *,
    runs: int,
    sizes: ThroughputSizes,
    say: Say = print,
) -> Throughput:
    """Every engine, ``runs`` times, interleaved; files go to fresh directories under ``root``."""
    result = Throughput()
    for run in range(1, runs + 1):
        say(f"  throughput run {run}/{runs}")
        with tempfile.TemporaryDirectory(prefix="sq-bench-", dir=root) as tmp:
            base = Path(tmp)
            _physical_run(base, sizes, result)
            for name in engines:
                for phase in ("durable", "batch"):
                    directory = base / f"{name}-{phase}"
                    directory.mkdir()
                    if phase == "durable":
                        _durable_run(name, directory, data, sizes, result)
                    else:
                        _batch_and_get_run(name, directory, data, sizes, result)
                    shutil.rmtree(directory)
    return result
