"""What ``run`` adds for CI lanes: ``--profile``, the QEMU settings a profile may fix
(``--smp``, ``--memory-mib``, ``--icount``), ``--until-phase`` and ``--junit``.

Kept apart from :mod:`harness.cli.run` so the run command stays a sequence of steps: resolve
the lane (profile against caller settings, an error on a contradiction), run, write JUnit.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.contract.junit import JunitBoot, write_junit
from harness.contract.phases import phase_named
from harness.contract.profiles import DEFAULT_PROFILE, Settings
from harness.contract.spec import Contract
from harness.deadline import MULTIPLIER_ENV, parse_multiplier
from harness.errors import ConfigError
from harness.vm.arch import profile as arch_profile


def add_lane_options(parser: argparse.ArgumentParser) -> None:
    """The ``lane`` option group of ``run``."""
    group = parser.add_argument_group("lane (profiles, phases, JUnit)")
    group.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        help="contract profile: QEMU settings and required markers (default: default)",
    )
    group.add_argument("--smp", type=int, default=None, help="vCPUs (a profile may fix it)")
    group.add_argument(
        "--memory-mib", type=int, default=None, help="guest RAM in MiB (a profile may fix it)"
    )
    group.add_argument(
        "--icount",
        default=None,
        metavar="VALUE",
        help="QEMU -icount value, e.g. shift=auto (TCG; a profile may fix it)",
    )
    group.add_argument(
        "--until-phase",
        default=None,
        metavar="NAME",
        help="stop once this contract phase is complete (RUN_PHASE)",
    )
    group.add_argument(
        "--junit",
        type=Path,
        default=None,
        metavar="PATH",
        help="write a JUnit XML file: a suite per boot, a case per marker (JUNIT_XML)",
    )


def caller_multiplier(args: argparse.Namespace) -> float | None:
    """The timeout multiplier the caller set (flag, then environment), or ``None``."""
    if args.timeout_multiplier is not None:
        return float(args.timeout_multiplier)
    env = os.environ.get(MULTIPLIER_ENV)
    if env:
        try:
            return parse_multiplier(env)
        except ConfigError as exc:
            raise ConfigError(f"${MULTIPLIER_ENV}: {exc}") from None
    return None


@dataclass(frozen=True)
class Lane:
    """The resolved lane of a run: the contract with its profile applied, and settings."""

    contract: Contract
    settings: Settings
    arch_scale: float = 1.0  # the guest architecture's TCG slowdown (harness.vm.arch)

    @property
    def multiplier(self) -> float:
        return (self.settings.timeout_multiplier or 1.0) * self.arch_scale

    def config_overrides(self) -> dict[str, Any]:
        """MachineConfig fields the lane sets (others keep the image's defaults)."""
        values = {
            "smp": self.settings.smp,
            "memory_mib": self.settings.memory_mib,
            "icount": self.settings.icount,
        }
        return {k: v for k, v in values.items() if v is not None}


def resolve_lane(args: argparse.Namespace, contract: Contract) -> Lane:
    """Apply ``--profile`` to ``contract`` and check the caller's settings against it."""
    profile = contract.profile(args.profile)
    caller = Settings(
        smp=args.smp,
        memory_mib=args.memory_mib,
        icount=args.icount,
        timeout_multiplier=caller_multiplier(args),
        record=True if getattr(args, "record", False) else None,
    )
    settings = profile.resolve(caller, accel=args.accel)
    lane_contract = contract.with_profile(args.profile)
    if args.until_phase is not None:
        phase_named(lane_contract.phases, args.until_phase)
    return Lane(lane_contract, settings, arch_profile(args.arch).timeout_scale)


def junit_from_run(
    path: Path,
    lane: Lane,
    boots: list[Any],
    expected: list[int],
    *,
    run_name: str,
    nonce: str,
) -> Path:
    """Write ``--junit`` from the live boot results (``BootResult``)."""
    records = [
        JunitBoot(
            boot.number,
            boot.matcher,
            duration=None if boot.exit is None else boot.exit.at,
            note="" if boot.exit is None else f"{boot.exit.describe()} ({boot.accel})",
        )
        for boot in boots
    ]
    return _write(path, records, lane, expected, {"run": run_name, "nonce": nonce})


def junit_from_replay(path: Path, lane: Lane, run_dir: Path, expected: list[int]) -> Path | None:
    """Write ``--junit`` from what a run directory recorded (a run that was interrupted)."""
    from harness.contract.history import replay

    try:
        replayed = replay(run_dir, lane.contract)
        if not replayed:  # a summary written before any boot was recorded in it
            replayed = [
                boot
                for number, directory in _boot_directories(run_dir)
                for boot in replay(directory, lane.contract, boot=number)
            ]
    except (ConfigError, OSError):
        # No boot was recorded: nothing to report per marker, and the interruption that got
        # us here must stay the error the caller sees.
        return None
    records = [
        JunitBoot(b.number, b.matcher, note="replayed from the run directory") for b in replayed
    ]
    return _write(path, records, lane, expected, {"run": run_dir.name})


def _write(
    path: Path, records: list[Any], lane: Lane, expected: list[int], properties: dict[str, str]
) -> Path:
    """The lane's JUnit file: one suite per boot, named after the lane's profile."""
    profile = lane.contract.profile_name
    return write_junit(
        path,
        records,
        lane.contract,
        expected_boots=expected,
        run=f"marker-contract.{profile}",
        properties={**properties, "profile": profile},
    )


def _boot_directories(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for child in run_dir.iterdir():
        match = re.fullmatch(r"boot(\d+)", child.name)
        if match and child.is_dir():
            found.append((int(match[1]), child))
    return sorted(found)
