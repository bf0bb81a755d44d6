"""``python -m harness diff RUN_A RUN_B [--json]``: what differs between two runs - missing and
extra markers, order changes, per-marker timing drift, the first diverging console line
(:mod:`harness.contract.diff`). Exit 0 when both runs saw the same markers with the same
outcomes, 1 when they differ."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.cli.common import EXIT_FAILED, EXIT_PASSED, add_contract_option


def add_parser(commands: Any) -> None:
    diff = commands.add_parser(
        "diff",
        help="compare two runs: markers, order, timing, first diverging line",
        description="Replay two run directories through the contract and compare them "
        "boot by boot. Exit 0 when markers and outcomes are the same, 1 otherwise.",
    )
    diff.add_argument("run_a", type=Path, help="run directory (or boot directory) A")
    diff.add_argument("run_b", type=Path, help="run directory (or boot directory) B")
    diff.add_argument("--json", action="store_true", help="print the comparison as JSON")
    diff.add_argument(
        "--drift",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="list only markers whose arrival drifted by at least this much (default: all)",
    )
    add_contract_option(diff)
    diff.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    from harness.contract.diff import diff_runs, render
    from harness.contract.spec import Contract

    result = diff_runs(args.run_a, args.run_b, Contract.load(args.contract))
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("\n".join(render(result, drift_threshold=args.drift)) + "\n")
    return EXIT_PASSED if result.same else EXIT_FAILED
