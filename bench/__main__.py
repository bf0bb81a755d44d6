"""``python -m bench [store|vm|scale|all]``: print the benchmark tables (``make bench``).

Without a subcommand every part runs (``all``). Results go to ``bench/results/`` (JSON kept in
git, PNGs ignored); ``bench/README.md`` explains the figures and holds the latest ones.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.results import RESULTS_DIR


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where JSON and PNGs go"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each part, wait up to this long for the CPUs to be quiet (default 0)",
    )


def _add_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("/var/tmp"),
        help="directory on the disk to benchmark (default /var/tmp)",
    )


def _add_store(parser: argparse.ArgumentParser) -> None:
    _add_dir(parser)
    group = parser.add_argument_group("host store benchmark")
    group.add_argument("--runs", type=int, default=5, help="samples per figure (median)")
    group.add_argument(
        "--toy", action="store_true", help="toy sizes (seconds): what the smoke test runs"
    )
    group.add_argument(
        "--max-records",
        type=int,
        default=1_000_000,
        help="largest journal of the replay curve (default 1,000,000)",
    )
    group.add_argument("--no-plots", action="store_true", help="skip the PNGs")


def _add_vm(parser: argparse.ArgumentParser, *, runs_alias: bool = False) -> None:
    group = parser.add_argument_group("VM benchmark")
    # `vm --runs N` is the natural spelling; under `all`, --runs belongs to the host benchmark.
    alias = ("--runs",) if runs_alias else ()
    group.add_argument(
        "--vm-runs",
        *alias,
        dest="vm_runs",
        type=int,
        default=5,
        help="two-boot contract runs (default 5)",
    )
    group.add_argument(
        "--guest-ops",
        type=int,
        default=300,
        help="operations per guest throughput figure (default 300)",
    )
    group.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    group.add_argument(
        "--arch",
        choices=("aarch64", "riscv64"),
        default="aarch64",
        help="guest architecture (default aarch64)",
    )
    group.add_argument(
        "--no-profile", action="store_true", help="skip the guest start-up profile boots"
    )
    group.add_argument(
        "--no-throughput", action="store_true", help="skip the guest throughput boots"
    )
    group.add_argument(
        "--kernel-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="append ARG to every contract boot's kernel command line (A/B a proposal); "
        "the result file is then vm-args-<date>.json",
    )


def _add_scale(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("xdist scale-out")
    group.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    group.add_argument(
        "--scale-repeat",
        type=int,
        default=1,
        help="times to run each pytest configuration (default 1)",
    )
    group.add_argument(
        "--contracts",
        type=int,
        default=4,
        help="contract runs per worker count in the contract scale-out (default 4)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parts = {
        "store": ("host: statefs vs the physical limit, sqlite3, lmdb", (_add_store,)),
        "vm": (
            "the contract's timeline, guest throughput, start-up profile",
            (functools.partial(_add_vm, runs_alias=True),),
        ),
        "scale": ("pytest -n 1 vs -n 2 on the QEMU tests", (_add_scale,)),
        "tables": ("the latest results as markdown (for bench/README.md)", ()),
        "all": ("every part (the default)", (_add_store, _add_vm, _add_scale)),
    }
    for name, (help_text, adders) in parts.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _add_common(sub)
        for add in adders:
            add(sub)
    return parser


def cmd_store(args: argparse.Namespace) -> int:
    from bench import store

    if args.toy:
        config = store.HostConfig.toy(args.dir)
    else:
        config = store.HostConfig(directory=args.dir, runs=args.runs)
        config.curve_records = tuple(n for n in config.curve_records if n <= args.max_records)
    config.wait_quiet = args.wait_quiet
    store.main(config, args.results_dir, plots=not args.no_plots)
    return 0


def cmd_vm(args: argparse.Namespace) -> int:
    from bench import vm

    return vm.main(
        runs=args.vm_runs,
        guest_ops=args.guest_ops,
        accel=args.accel,
        profile=not args.no_profile,
        results_dir=args.results_dir,
        wait_quiet=args.wait_quiet,
        throughput=not args.no_throughput,
        kernel_args=args.kernel_arg,
        name=("vm-args" if args.kernel_arg else "vm")
        + ("" if args.arch == "aarch64" else f"-{args.arch}"),
        arch=args.arch,
    )


def cmd_scale(args: argparse.Namespace) -> int:
    from bench import scale

    workers = [int(n) for n in args.workers.split(",")]
    return scale.main(
        workers=workers,
        repeat=args.scale_repeat,
        contracts=args.contracts,
        results_dir=args.results_dir,
        wait_quiet=args.wait_quiet,
    )


def cmd_tables(args: argparse.Namespace) -> int:
    from bench import readme_tables

    return readme_tables.main(args.results_dir)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["all", *argv]
    args = build_parser().parse_args(argv)
    if args.command == "all":
        codes = [cmd_store(args), cmd_vm(args), cmd_scale(args)]
        return max(codes)
    commands = {
        "store": cmd_store,
        "vm": cmd_vm,
        "scale": cmd_scale,
        "tables": cmd_tables,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
