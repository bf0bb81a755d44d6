"""What a VM needs before QEMU is started, checked before anything is created.

A missing QEMU binary, disk image, kernel or initramfs is a set-up problem with one clear
message (which Debian package, which make target); checking it first means a failed run leaves
no run directory, no fresh disk and no "starting QEMU" line behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.diagnosis import REBUILD_IMAGE
from harness.errors import ConfigError, DependencyMissing
from harness.vm.arch import ARCH_PROFILES
from harness.vm.config import MachineConfig


def preflight(config: MachineConfig) -> str:
    """Raise :class:`DependencyMissing` / :class:`ConfigError` unless ``config`` can launch;
    return the resolved path of the QEMU binary."""
    qemu_path = shutil.which(config.qemu)
    if qemu_path is None:
        raise DependencyMissing(missing_qemu_message(config.qemu, config.arch))
    for disk in config.disks:
        if disk.is_local_file and not Path(disk.file).exists():
            raise ConfigError(f"disk image {disk.file} does not exist")
    for what, path in (("kernel", config.kernel), ("initramfs", config.initramfs)):
        if path is not None:
            check_boot_file(what, path)
    return qemu_path


def missing_qemu_message(binary: str, arch: str) -> str:
    """What to tell a user whose QEMU binary is not installed: the Debian package and how."""
    package = ARCH_PROFILES[arch].debian_package
    where = "does not exist or is not executable" if "/" in binary else "not found on PATH"
    return (
        f"QEMU binary {binary!r} {where}: install the Debian package {package} with "
        f"`sudo apt-get install {package} qemu-utils`, or run `make setup` (installs every "
        f"package and the venv the harness needs)"
    )


def check_boot_file(what: str, path: Path) -> None:
    """A kernel or initramfs that is missing or empty fails here, not as a silent guest."""
    if not path.is_file():
        raise ConfigError(
            f"{what} {path} does not exist: build the guest image with `make image` "
            f"(or `python -m harness image`)"
        )
    if path.stat().st_size == 0:
        raise ConfigError(
            f"{what} {path} is empty: the guest image is broken; rebuild it with {REBUILD_IMAGE}"
        )
