"""``python -m bench store``: statefs on the host, against the disk and the usual alternatives.

Everything runs on file-backed devices in one directory on the real disk (``--dir``, default
/var/tmp, never a tmpfs: ``fdatasync`` on tmpfs is free and would flatter every engine), and
every throughput figure is also given as a ratio to the physical limit measured in the same
run. The result goes to stdout, ``bench/results/store-<date>.json`` and two PNGs.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import reopen, throughput
from bench.data import KEY_BYTES, SEED, VALUE_BYTES, make_dataset
from bench.engines import engine_names
from bench.env import (
    describe_machine,
    filesystem_of,
    sample_load,
    set_sample_window,
    wait_for_quiet,
)
from bench.results import write_json
from bench.store_report import judge, render_report

Say = Callable[[str], None]


@dataclass
class HostConfig:
    """Sizes and knobs of a host run; :meth:`toy` is the smoke test's seconds-long version."""

    directory: Path = Path("/var/tmp")
    runs: int = 5
    sizes: throughput.ThroughputSizes = field(default_factory=throughput.ThroughputSizes)
    sector_sizes: tuple[int, ...] = (512, 4096)
    reopen_live: tuple[int, ...] = (10_000, 100_000)
    curve_records: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    journal_sector_size: int = 512
    amplification_live: int = 10_000
    wait_quiet: float = 0.0  # seconds to wait for a quiet machine before each part
    max_busy: float = 0.25
    load_window: float = 0.2  # seconds of CPU watching before each sample

    @classmethod
    def toy(cls, directory: Path) -> HostConfig:
        return cls(
            directory=directory,
            runs=2,
            sizes=throughput.ThroughputSizes(
                durable=20, batch=500, gets=500, get_rounds=2, statefs_device_bytes=4 << 20
            ),
            reopen_live=(200,),
            curve_records=(100, 1_000),
            amplification_live=200,
            load_window=0.0,
        )


def _quiet(config: HostConfig, say: Say) -> None:
    if config.wait_quiet > 0:
        wait_for_quiet(config.max_busy, config.wait_quiet, say=say)


def run(config: HostConfig, say: Say = print) -> dict[str, object]:
    """Measure everything; return the result document (what the JSON file holds)."""
    started = dt.datetime.now(dt.UTC)
    set_sample_window(config.load_window)
    config.directory.mkdir(parents=True, exist_ok=True)
    fs = filesystem_of(config.directory)
    if fs["type"] in ("tmpfs", "ramfs"):
        say(f"warning: {config.directory} is on {fs['type']}: fdatasync is free there")
    engines = engine_names(config.sector_sizes)
    say(
        f"host benchmark in {config.directory} ({fs['type']} on {fs['device']}), "
        f"engines: {', '.join(engines)}"
    )
    count = max(config.sizes.durable, config.sizes.batch)
    data = make_dataset(count)
    load_before = sample_load(max(config.load_window, 0.05))
    with tempfile.TemporaryDirectory(prefix="sq-bench-", dir=config.directory) as tmp:
        root = Path(tmp)
        _quiet(config, say)
        measured = throughput.measure(
            root, engines, data, runs=config.runs, sizes=config.sizes, say=say
        )
        _quiet(config, say)
        reopen_points = reopen.reopen_table(
            root, config.reopen_live, config.runs, config.journal_sector_size, say
        )
        _quiet(config, say)
        curves = reopen.replay_curve(
            root, config.curve_records, config.runs, config.journal_sector_size, say
        )
        compaction = [
            reopen.compaction_amplification(root, config.amplification_live, ss)
            for ss in config.sector_sizes
        ]
    document: dict[str, object] = {
        "kind": "store",
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": describe_machine().as_dict(),
        "filesystem": fs,
        "load_before": asdict(load_before),
        "load_after": asdict(sample_load(max(config.load_window, 0.05))),
        "config": {
            "directory": str(config.directory),
            "runs": config.runs,
            "sizes": asdict(config.sizes),
            "sector_sizes": list(config.sector_sizes),
            "reopen_live": list(config.reopen_live),
            "curve_records": list(config.curve_records),
            "journal_sector_size": config.journal_sector_size,
            "key_bytes": KEY_BYTES,
            "value_bytes": VALUE_BYTES,
            "seed": SEED,
        },
        "throughput": measured.as_dict(),
        "reopen": [point.as_dict() for point in reopen_points],
        "replay_curve": {
            series: [point.as_dict() for point in points] for series, points in curves.items()
        },
        "compaction": compaction,
    }
    document["targets"] = [verdict.as_dict() for verdict in judge(document)]
    return document


def main(config: HostConfig, results_dir: Path, *, plots: bool = True, say: Say = print) -> Path:
    """Run, print the report, write the JSON (and PNGs); returns the JSON path."""
    document = run(config, say)
    say("")
    say(render_report(document))
    path = write_json(results_dir, "store", document)
    say(f"\nwrote {path}")
    if plots:
        from bench.plots import plot_store

        for png in plot_store(document, results_dir):
            say(f"wrote {png}")
    return path
