"""``python -m harness powercut``: the campaign's flags, live rows, the table and the exit code.

``harness/cli/powercut.py`` owns the subcommand and the shared options (``--arch``, ``--accel``,
``--runs-dir``, ``--timeout-multiplier``, ``-v``); this module adds the campaign's own flags and
runs it. Exit 0 only if every cycle passed (and so: zero losses), 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
from pathlib import Path
from typing import Any

from harness.contract.progress import ProgressPrinter
from harness.docfigures import update_block
from harness.errors import ConfigError
from harness.powercut.campaign import (
    DEFAULT_CUT_WINDOW,
    DEFAULT_CYCLES,
    DEFAULT_DISK_MIB,
    DEFAULT_REQUEST_KIB,
    DEFAULT_VALUE_MAX,
    CampaignOptions,
    run_campaign,
)
from harness.powercut.fates import FATES
from harness.powercut.report import (
    REPORT_NAME,
    render,
    summary_lines,
    table_header,
    table_row,
    write_json,
)
from harness.powercut.triggers import TRIGGERS
from harness.shard import add_split_options

EXIT_PASSED = 0
EXIT_FAILED = 1


def _window(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX seconds, got {text!r}") from None
    return low, high


def parse_fates(text: str) -> tuple[str, ...]:
    """``drop,subset,torn`` -> a tuple, validated."""
    fates = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(fates) - set(FATES))
    if not fates or unknown:
        raise ConfigError(f"--fates takes a comma list of {', '.join(FATES)}; got {text!r}")
    return fates


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("campaign")
    group.add_argument(
        "--cycles",
        type=int,
        default=DEFAULT_CYCLES,
        help=f"power cuts to make and check (default {DEFAULT_CYCLES})",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the cut moments and the fates (default: random, printed)",
    )
    group.add_argument(
        "--disk-mib",
        type=int,
        default=DEFAULT_DISK_MIB,
        help=f"size of the fresh disk; small disks compact often (default {DEFAULT_DISK_MIB})",
    )
    group.add_argument(
        "--cut-window",
        type=_window,
        default=DEFAULT_CUT_WINDOW,
        metavar="MIN:MAX",
        help="the cut comes MIN..MAX s (uniform) after the recovery marker (default "
        f"{DEFAULT_CUT_WINDOW[0]:g}:{DEFAULT_CUT_WINDOW[1]:g})",
    )
    group.add_argument(
        "--fates",
        default=",".join(FATES),
        help=f"fates to choose from for the pending writes (default {','.join(FATES)})",
    )
    group.add_argument(
        "--keep-artifacts",
        action="store_true",
        help="keep the run directory of a passing campaign too (a failing one always is)",
    )
    group.add_argument(
        "--nbdkit-verbose",
        action="store_true",
        help="log every NBD request in nbdkit/boot<N>.log (large)",
    )
    group.add_argument(
        "--value-max",
        type=int,
        default=DEFAULT_VALUE_MAX,
        help=f"the workload's largest value in bytes (default {DEFAULT_VALUE_MAX})",
    )
    group.add_argument(
        "--request-kib",
        type=int,
        default=DEFAULT_REQUEST_KIB,
        help="the guest disk's largest request, so one batch is several writes "
        f"(default {DEFAULT_REQUEST_KIB})",
    )
    group.add_argument(
        "--triggers",
        default="",
        metavar="T1,T2",
        help=f"cycle n takes T[(n-1) %% len] instead of the schedule (of {', '.join(TRIGGERS)})",
    )
    add_split_options(
        group,
        items="cycles",
        needs="--seed",
        report_help=f"also write {REPORT_NAME} here",
        doc_block="powercut",
    )


def options_from(args: argparse.Namespace, *, multiplier: float) -> CampaignOptions:
    """The campaign the flags describe (validated: a bad value fails before anything runs)."""
    if args.shard[1] > 1 and args.seed is None:
        raise ConfigError("--shard needs --seed: every shard must make the same choices")
    return CampaignOptions(
        cycles=args.cycles,
        seed=args.seed if args.seed is not None else random.randrange(2**31),
        disk_mib=args.disk_mib,
        cut_window=args.cut_window,
        fates=parse_fates(args.fates),
        multiplier=multiplier,
        accel=args.accel,
        keep_artifacts=args.keep_artifacts,
        nbdkit_verbose=args.nbdkit_verbose,
        value_max=args.value_max,
        request_kib=args.request_kib,
        shard=args.shard,
        triggers=tuple(part.strip() for part in args.triggers.split(",") if part.strip()),
    )


def run(
    options: CampaignOptions,
    *,
    run_dir: Path,
    image: Any,
    report: Path | None = None,
    doc: tuple[Path, str] | None = None,
) -> int:
    """Run the campaign; print rows as cycles are judged, then the table and the summary."""
    seed = options.seed
    out = ProgressPrinter()
    out.say(
        f"power-cut campaign: {options.cycles} cycles, seed {seed}, {options.disk_mib} MiB disk, "
        f"run {run_dir}"
    )
    out.say(table_header())
    result = run_campaign(
        image, options, run_dir=run_dir, on_cycle=lambda cycle: out.say(table_row(cycle))
    )
    if report is not None:
        write_json(result, dataclasses.asdict(options), report)
    out.say("")
    out.say(render(result, table=False))
    out.say("")
    verdict = "PASSED" if result.passed else "FAILED"
    out.say(f"power-cut campaign {verdict}: {len(result.cycles)} cycles, {result.losses} losses")
    if run_dir.exists():
        out.say(f"artifacts: {run_dir} ({REPORT_NAME}, boot<N>/uart.log, nbdkit/, disk.img)")
    else:
        out.say("artifacts removed (--keep-artifacts keeps them)")
    shard = f" --shard {options.shard[0]}/{options.shard[1]}" if options.shard[1] > 1 else ""
    again = f"--cycles {options.cycles} --seed {seed}{shard}"
    out.say(f"same choices again: {again}")
    if doc is not None:
        lines = [f"$ python -m harness powercut {again}", *summary_lines(result)]
        lines.append(
            f"power-cut campaign {verdict}: {len(result.cycles)} cycles, {result.losses} losses"
        )
        update_block(doc[0], doc[1], lines)
        out.say(f"updated {doc[0]}")
    return EXIT_PASSED if result.passed else EXIT_FAILED


def run_merge(paths: list[str], doc: tuple[Path, str] | None = None) -> int:
    """Print the merged campaign's summary; exit 0 only if every shard passed."""
    from harness.powercut.merge import merge_reports, summary

    merged = merge_reports([Path(path) for path in paths])
    lines = summary(merged)
    for line in lines:
        print(line)
    if doc is not None:
        command = f"$ python -m harness powercut merge ({len(paths)} shards)"
        update_block(doc[0], doc[1], [command, *lines])
    return EXIT_PASSED if merged["passed"] else EXIT_FAILED
