"""``python -m harness crash-states``: the flags, the run, the table, the closing line, and
``crash-states merge`` for shard reports.

The subcommand itself (shared VM options, the image, the run directory) is registered by the
harness's CLI; this module adds the command's own flags and runs it. Exit 0 only if every state
judged and booted passed, 1 otherwise (the closing line says how many failed).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.crashlog.campaign import DEFAULT_DISK_KIB, DEFAULT_WRITES, CrashStatesRun, Options
from harness.crashlog.report import REPORT_NAME, Report, merge, read_report, table, write_report
from harness.docfigures import update_block
from harness.errors import ConfigError
from harness.shard import add_split_options

EXIT_PASSED = 0
EXIT_FAILED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("crash states")
    group.add_argument("--seed", type=int, default=0, help="first run's seed (default 0)")
    group.add_argument("--runs", type=int, default=1, help="guest runs, seeds SEED.. (default 1)")
    group.add_argument(
        "--writes",
        type=int,
        default=DEFAULT_WRITES,
        help=f"synced batches each guest run writes (default {DEFAULT_WRITES})",
    )
    group.add_argument(
        "--disk-kib",
        type=int,
        default=DEFAULT_DISK_KIB,
        help=f"the guest's disk; small disks compact often (default {DEFAULT_DISK_KIB})",
    )
    group.add_argument(
        "--depth", type=int, default=1, help="crash-state generator depth (1 fast, 2+ deep)"
    )
    group.add_argument(
        "--boots", type=int, default=1, help="states booted in the VM, over all runs (default 1)"
    )
    group.add_argument(
        "--from-log",
        default="",
        metavar="DIR",
        help="judge a kept run directory (writes.log, disk.img, run.json) instead of recording",
    )
    add_split_options(
        group,
        items="seeds",
        report_help=f"where to write {REPORT_NAME} (default: run dir)",
        doc_block="crash-states",
    )


def options_from(args: argparse.Namespace, *, multiplier: float) -> Options:
    if args.from_log and args.runs != 1:
        raise ConfigError("--from-log judges one run: drop --runs")
    return Options(
        seed=args.seed,
        runs=args.runs,
        writes=args.writes,
        disk_kib=args.disk_kib,
        depth=args.depth,
        boots=args.boots,
        shard=args.shard,
        accel=args.accel,
        multiplier=multiplier,
        from_log=str(args.from_log),
    )


def finish(
    report: Report,
    say: Callable[[str], None],
    doc: Path | None = None,
    block: str = "crash-states",
) -> int:
    lines = table(report)
    for line in lines:
        say(line)
    if doc is not None:
        flags = Options(**_known(report.options)).flags() if report.options else []
        shards = f"  # merged from {len(report.shards)} shards" if report.shards else ""
        command = shlex.join(["python", "-m", "harness", "crash-states", *flags]) + shards
        seconds = (
            f"{report.seconds:.0f} s (the slowest shard)" if shards else f"{report.seconds:.0f} s"
        )
        update_block(doc, block, [f"$ {command}", *lines, report.summary_line(), seconds])
        say(f"updated {doc}")
    say(report.summary_line())
    return EXIT_PASSED if report.passed else EXIT_FAILED


def _known(options: dict[str, Any]) -> dict[str, Any]:
    names = ("seed", "runs", "writes", "disk_kib", "depth", "boots")
    return {name: options[name] for name in names if name in options}


def run_merge(
    paths: list[str],
    say: Callable[[str], None] = print,
    doc: Path | None = None,
    block: str = "crash-states",
) -> int:
    if not paths:
        raise ConfigError("merge needs shard reports (crash-states.json files)")
    report = merge(read_report(Path(path)) for path in paths)
    say(f"merged {len(paths)} shard reports")
    return finish(report, say, doc, block)


def run(
    options: Options,
    *,
    run_dir: Path,
    image: Any,
    report_path: Path | None = None,
    doc: Path | None = None,
    block: str = "crash-states",
    say: Callable[[str], None] = print,
) -> int:
    """Run, write the report, print the table and the closing line (always last)."""
    say(
        f"crash states: {options.runs} run(s) from seed {options.seed}, {options.writes} "
        f"batches each, depth {options.depth}, {options.boots} boot(s), shard "
        f"{options.shard[0]}/{options.shard[1]}; run {run_dir}"
    )
    report = CrashStatesRun(image, options, run_dir, say).run()
    path = write_report(report, report_path or run_dir / REPORT_NAME)
    say(f"report: {path}")
    return finish(report, say, doc, block)
