"""The raw disk images a run boots from: fresh ones, and copies kept between boots.

A fresh disk is a sparse file of zeros (no block allocated), what the guest sees as a blank
disk it may format. Before each boot after the first, the contract runner keeps a sparse copy
of the disk as the previous boot left it (``disk.before-boot2.img``): replaying boot 2 on the
run's final disk would start from what boot 2 itself wrote, and its reboot check would fail.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from harness.errors import ConfigError
from harness.vm.config import DiskSpec

log = logging.getLogger(__name__)

DEFAULT_DISK_MIB = 64
#: A disk with more data than this is not copied before each boot (see snapshot_disks).
SNAPSHOT_MAX_BYTES = 256 << 20


def create_disk(path: Path, size_mib: int = DEFAULT_DISK_MIB) -> Path:
    """A fresh sparse raw disk image of ``size_mib`` MiB (zeros; no blocks allocated)."""
    if size_mib <= 0:
        raise ConfigError(f"disk size must be positive, got {size_mib} MiB")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size_mib * 1024 * 1024)
    return path


def snapshot_path(run_dir: Path, disk: Path, boot: int) -> Path:
    """Where the run keeps ``disk`` as it was before ``boot`` (to replay that boot later)."""
    return run_dir / f"{disk.stem}.before-boot{boot}{disk.suffix}"


def snapshot_disks(disks: Sequence[DiskSpec], run_dir: Path, boot: int) -> list[Path]:
    """Keep a sparse copy of each local disk as it is before ``boot``: replaying boot 2 needs
    the disk boot 1 left, not the one boot 2 changed (its reboot check would fail)."""
    copies = []
    for disk in disks:
        source = Path(disk.file)
        if not disk.is_local_file or not source.is_file():
            continue
        allocated = source.stat().st_blocks * 512
        if allocated > SNAPSHOT_MAX_BYTES:
            log.info("not keeping a copy of %s: %d MiB in use", source, allocated >> 20)
            continue
        target = snapshot_path(run_dir, source, boot)
        sparse_copy(source, target)
        copies.append(target)
    return copies


def sparse_copy(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` writing only its data extents (holes stay holes)."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            src.seek(start)
            dst.seek(start)
            remaining = end - start
            while remaining:
                block = src.read(min(remaining, 1 << 20))
                if not block:
                    break
                dst.write(block)
                remaining -= len(block)
            offset = end
        dst.truncate(size)
