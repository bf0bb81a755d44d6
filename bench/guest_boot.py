"""Boot the guest once through the harness library and return its timed console.

Every VM figure comes from ``uart.timestamps`` (each console line with its host time since
QEMU's launch) as the harness recorded it: no scraping of the CLI's output.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.guest_payload import payload
from harness.contract.history import read_console
from harness.contract.runner import contract_config
from harness.deadline import Deadline
from harness.vm.config import Accel, MachineConfig
from harness.vm.disks import create_disk
from harness.vm.kernel_args import script_args
from harness.vm.machine import ExitInfo, Machine

BOOT_TIMEOUT = 180.0


@dataclass
class Boot:
    """One finished boot: its console lines with host times, and how QEMU ended."""

    lines: list[tuple[float | None, str]]
    exit: ExitInfo | None
    directory: Path

    def find(self, prefix: str) -> list[tuple[float | None, str]]:
        """Lines containing ``prefix`` (kernel lines carry a ``[time]`` before the text)."""
        return [(at, line) for at, line in self.lines if prefix in line]

    def first(self, text: str) -> float | None:
        for at, line in self.lines:
            if text in line:
                return at
        return None


def create_zeroed_disk(path: Path, size_mib: int) -> Path:
    """A raw disk image whose every byte is written (zeros), unlike the harness's sparse one:
    the guest's writes then overwrite allocated blocks in the host file, so a guest
    ``fdatasync`` measures the disk and not the host filesystem allocating blocks."""
    chunk = bytes(1 << 20)
    with open(path, "wb") as handle:
        for _ in range(size_mib):
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def base_config(image: Any, disk: Path, accel: Accel, *, quiet: bool = True) -> MachineConfig:
    """The contract's machine (same image, disk and devices); ``quiet=False`` drops the
    kernel's ``quiet`` so its own timestamps show where kernel boot time goes."""
    config = contract_config(image, disk, accel=accel)
    if not quiet:
        config = config.replace(kernel_args=tuple(a for a in config.kernel_args if a != "quiet"))
    return config


#: Kernel arguments that make the kernel print every initcall with its duration.
INITCALL_DEBUG = ("initcall_debug", "ignore_loglevel")


def boot(config: MachineConfig, kernel_args: Sequence[str], directory: Path, name: str) -> Boot:
    """Run one boot to the guest's power-off (or the timeout) and collect its console."""
    machine = Machine(config.with_kernel_args(*kernel_args), name=name, artifacts_root=directory)
    with machine:
        machine.wait(Deadline(BOOT_TIMEOUT, label=f"{name} boot"))
    return Boot(
        list(read_console(machine.artifacts.path)), machine.exit_info, machine.artifacts.path
    )


def script_boot(
    image: Any,
    directory: Path,
    script: str,
    *,
    accel: Accel,
    extra_args: Sequence[str] = (),
    quiet: bool = True,
    disk_mib: int = 64,
    zeroed: bool = False,
) -> Boot:
    """``sq.mode=script`` with ``bench/guest_scripts/<script>.py`` on a fresh disk (sparse
    like the contract's, or ``zeroed``)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{script}.img"
    disk = create_zeroed_disk(path, disk_mib) if zeroed else create_disk(path, disk_mib)
    try:
        config = base_config(image, disk, accel, quiet=quiet)
        args = (*script_args(payload(script)), *extra_args)
        return boot(config, args, directory, script)
    finally:
        disk.unlink(missing_ok=True)
