"""The two-boot marker contract, run N times through
:class:`harness.contract.runner.ContractRunner`.

Each run is what ``make qemu-test`` does (every boot to the guest's power-off, fresh disk),
timed from the first QEMU launch to the last QEMU exit. Besides the contract's markers, the
phases a reader needs to see where the time goes are picked from the console (each line is
timestamped by the harness as it arrives): the disk probe, the store's open, each service
ready, the soft restart, the power-off.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.env import Load, sample_load
from harness.contract.runner import ContractRunner, RunOptions, contract_config
from harness.contract.spec import Contract
from harness.vm.config import Accel
from harness.vm.disks import create_disk

#: A boot's phases are the contract's markers (``harness/contract/contract.toml``), timed by
#: the matcher's first arrival, and these console lines the contract does not require (the
#: first line containing one of the texts); reports order them by when they arrived.
CONSOLE_PHASES: dict[str, tuple[str, ...]] = {
    "store-opened": ("statefsd: formatted", "statefsd: replayed"),
    "keystored-ready": ("keystored: ready",),
    "updated-ready": ("updated: ready",),
    "soft-restart": ("init: soft restart",),
    "power-down": ("reboot: Power down",),
}


@dataclass
class BootTimes:
    """Seconds since this boot's QEMU launch for each phase (None: not seen)."""

    number: int
    passed: bool
    phases: dict[str, float | None]
    exit_at: float | None
    last_required_at: float | None  # when the contract was proven (until-marker would stop)


@dataclass
class ContractRun:
    wall: float
    passed: bool
    load: Load
    run_dir: str
    boots: list[BootTimes] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def phase_times(
    lines: list[tuple[float | None, str]], arrivals: Mapping[str, Any]
) -> dict[str, float | None]:
    """Seconds since launch of each phase: every marker the matcher tracked, the console
    phases from ``lines``, and the second "statefsd: ready" (after the soft restart)."""
    times: dict[str, float | None] = {marker_id: a.at for marker_id, a in arrivals.items()}
    for phase, texts in CONSOLE_PHASES.items():
        times[phase] = next((at for at, line in lines if any(t in line for t in texts)), None)
    ready = [at for at, line in lines if "statefsd: ready" in line]
    times["statefsd-ready-again"] = ready[1] if len(ready) > 1 else None
    return times


def run_once(
    image: Any,
    contract: Contract,
    run_dir: Path,
    accel: Accel,
    kernel_args: Sequence[str] = (),
    *,
    multiplier: float = 1.0,
) -> ContractRun:
    """One full contract run on a fresh disk (deleted afterwards; the logs are kept).

    ``kernel_args`` are appended to every boot's command line: a proposal that only needs
    kernel parameters (``initcall_blacklist=...``) is measured without touching anything.
    ``multiplier`` scales the contract's timeouts (the architecture's TCG slowdown).
    """
    disk = create_disk(run_dir / "disk.img")
    load = sample_load()
    config = contract_config(image, disk, accel=accel).with_kernel_args(*kernel_args)
    runner = ContractRunner(
        config, contract, run_dir=run_dir, options=RunOptions(multiplier=multiplier)
    )
    started = time.monotonic()
    result = runner.run()
    wall = time.monotonic() - started
    disk.unlink(missing_ok=True)
    boots = []
    for boot in result.boots:
        required = [
            a.at
            for a in boot.matcher.arrivals.values()
            if a.at is not None and _required(boot.matcher, a.marker_id)
        ]
        boots.append(
            BootTimes(
                number=boot.number,
                passed=boot.passed,
                phases=phase_times(boot.matcher.lines, boot.matcher.arrivals),
                exit_at=boot.exit.at if boot.exit else None,
                last_required_at=max(required) if required else None,
            )
        )
    return ContractRun(wall, result.passed, load, str(run_dir), boots)


def _required(matcher: Any, marker_id: str) -> bool:
    return any(m.id == marker_id and m.required for m in matcher.contract.markers)
