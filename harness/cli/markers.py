"""``python -m harness markers``: replay a past run's console through the contract: which
marker came when, what was missing, which line failed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.artifacts import default_runs_dir, latest_run
from harness.cli.common import EXIT_FAILED, EXIT_PASSED, add_contract_option
from harness.contract.matcher import Outcome
from harness.contract.profiles import DEFAULT_PROFILE, recorded_profile
from harness.contract.progress import ProgressPrinter
from harness.contract.spec import Contract
from harness.errors import ConfigError


def add_parser(commands: Any) -> None:
    markers = commands.add_parser(
        "markers",
        help="which marker came when in a past run",
        description="Replay a run's uart.timestamps through the "
        "contract: arrival times, missing markers, failure line.",
    )
    markers.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=None,
        help="run directory, boot directory or uart.log (default: latest run)",
    )
    markers.add_argument(
        "--boot",
        type=int,
        default=None,
        help="only this boot (or: the boot number of a lone uart.log)",
    )
    markers.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="also draw the run: a lane per boot, markers at their arrival, failures, "
        "phases (needs matplotlib)",
    )
    markers.add_argument(
        "--junit",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the replayed verdicts as JUnit XML (a suite per boot, a case per marker)",
    )
    markers.add_argument(
        "--profile",
        default=None,
        help="judge under this contract profile (default: the one run.json records)",
    )
    add_contract_option(markers)
    markers.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    from harness.contract.history import is_one_boot, replay

    path = args.path or latest_run()
    if path is None:
        raise ConfigError(f"no runs under {default_runs_dir()}; give a run directory")
    contract = Contract.load(args.contract)
    profile = args.profile or recorded_profile(path) or DEFAULT_PROFILE
    contract = contract.with_profile(profile)
    boots = replay(path, contract, boot=args.boot)
    out = ProgressPrinter()
    out.say(f"run: {path}  (profile {profile})")
    lone = is_one_boot(path)
    if lone and args.boot is None and boots:
        out.say(f"one console: judged as boot {boots[0].number} (--boot N judges it as boot N)")
    passed = True
    for boot in boots:
        passed = passed and boot.matcher.outcome is Outcome.PASSED
        note = "" if boot.timed else "  [no uart.timestamps: arrival times unknown]"
        verdict = boot.matcher.outcome.value.upper()
        out.say(
            boot.matcher.report(header=f"boot {boot.number} ({boot.directory}): {verdict}{note}")
        )
    # A run directory owes every boot of the contract; one console (a file, a boot
    # directory) owes only the boot it is judged as.
    if args.boot is not None:
        expected = {args.boot}
    elif lone:
        expected = {b.number for b in boots}
    else:
        expected = set(contract.boot_numbers)
    seen = {b.number for b in boots}
    if args.plot is not None:
        from harness.contract.plot import plot_run

        plot_run(boots, args.plot, title=f"run {path.name}", not_run=sorted(expected - seen))
        out.say(f"plot: {args.plot}")
    if args.junit is not None:
        from harness.contract.junit import JunitBoot, write_junit

        records = [JunitBoot(b.number, b.matcher, note="replayed") for b in boots]
        write_junit(
            args.junit,
            records,
            contract,
            expected_boots=sorted(expected),
            run=f"marker-contract.{profile}",
            properties={"run": path.name, "profile": profile},
        )
        out.say(f"junit: {args.junit}")
    if expected - seen:
        out.say(f"boots without a console record: {', '.join(map(str, sorted(expected - seen)))}")
        passed = False
    return EXIT_PASSED if passed else EXIT_FAILED
