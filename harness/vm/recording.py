"""A recorded run: every boot's QEMU replay log, disk overlay and console, with their hashes.

:class:`RunRecorder` turns each boot's config into a recording one and writes down what a
replay needs, in the run directory::

    <run>/
        disk.img               the base disk (never written: every boot writes its overlay)
        record/
            kernel, initramfs  the exact files the boots ran (the image cache may move on)
            boot1.qcow2        boot 1's writes, backed by ../disk.img
            boot1.rr           boot 1's QEMU replay log (-icount rr=record)
            boot2.qcow2        boot 2's writes, backed by boot1.qcow2
            boot2.rr
        boot1/uart.log         the recorded console (what the replay must reproduce)

and ``run.json`` gets a ``record`` section (:meth:`RunRecorder.summary`): the QEMU version,
each file's path (relative to the run directory) with its SHA-256 and size, and per boot the
machine settings the replay rebuilds its command line from. :mod:`harness.vm.replaying` reads
it back and checks every hash before it launches anything.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.vm.config import MachineConfig
from harness.vm.overlays import create_overlay, qemu_img, sha256_file
from harness.vm.record import RecordReplay

RECORD_DIR = "record"
RECORD_VERSION = 1

#: The MachineConfig fields a replay takes from the record (everything else is rebuilt: the
#: disk becomes a scratch overlay, the replay log is read instead of written).
REPLAYED_FIELDS: tuple[str, ...] = (
    "arch",
    "qemu_binary",
    "machine",
    "cpu",
    "memory_mib",
    "smp",
    "kernel_args",
    "devices",
    "extra_args",
    "virtio_suffix",
)


def file_ref(run_dir: Path, path: Path) -> dict[str, Any]:
    """``{"path", "sha256", "bytes"}`` of ``path``; the path is relative to ``run_dir`` when
    the file is inside it (a copied run directory still resolves)."""
    return {"path": _rel(run_dir, path), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def qemu_version(binary: str) -> str:
    """The first line of ``<qemu> --version`` (a replay log is only valid for the same QEMU)."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    return done.stdout.splitlines()[0].strip() if done.stdout else "unknown"


def _keep_copy(source: Path, target: Path) -> Path:
    """A hard link when the file system allows it, else a copy. A link is safe: the image
    builder replaces its files by rename, never in place, so the recorded bytes stay (and the
    replay's hash check would notice if they did not)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target


class RunRecorder:
    """Records each boot of one run (see the module docstring).

    Args:
        run_dir: the run directory (``record/`` is created inside).
        base_config: the run's config; its one disk becomes the base of the overlay chain.
        icount: the ``-icount`` value of every boot (default: the config's, else
            ``shift=auto``); the record adds ``rr=record,rrfile=...`` to it.
    """

    def __init__(
        self, run_dir: Path, base_config: MachineConfig, *, icount: str | None = None
    ) -> None:
        if len(base_config.disks) != 1:
            count = len(base_config.disks)
            raise ConfigError(f"a recorded run has one disk, this config has {count}")
        disk = base_config.disks[0]
        icount = icount or base_config.icount or "shift=auto"
        # Validates icount, refuses KVM and an NBD disk (the power cut) before anything is made.
        base_config.replace(icount=None, record=RecordReplay("record", Path("check"), icount))
        if base_config.kernel is None or base_config.initramfs is None:
            raise ConfigError("a recorded run needs a kernel and an initramfs")
        qemu_img()
        self.run_dir = run_dir
        self.icount = icount
        self.dir = run_dir / RECORD_DIR
        self.dir.mkdir(parents=True, exist_ok=False)
        self.kernel = _keep_copy(base_config.kernel, self.dir / "kernel")
        self.initramfs = _keep_copy(base_config.initramfs, self.dir / "initramfs")
        self.kernel_ref = file_ref(run_dir, self.kernel)
        self.initramfs_ref = file_ref(run_dir, self.initramfs)
        self.qemu = qemu_version(base_config.qemu)
        base = Path(disk.file)
        self.base = file_ref(run_dir, base)
        self.base["format"] = disk.format or "raw"
        self._top, self._top_format = base, disk.format or "raw"
        self.boots: list[dict[str, Any]] = []
        self._pending: dict[int, dict[str, Any]] = {}

    def boot_config(self, number: int, config: MachineConfig) -> MachineConfig:
        """``config`` recording boot ``number``: its own overlay over the chain so far, its
        own replay log, TCG, and the kept kernel and initramfs."""
        overlay = create_overlay(self.dir / f"boot{number}.qcow2", self._top, self._top_format)
        rrfile = self.dir / f"boot{number}.rr"
        disk = dataclasses.replace(config.disks[0], file=str(overlay), format="qcow2")
        kernel_args = config.kernel_args
        if "nokaslr" not in kernel_args:
            kernel_args = (*kernel_args, "nokaslr")  # symbols at link addresses for gdb
        recording = config.replace(
            kernel_args=kernel_args,
            kernel=self.kernel,
            initramfs=self.initramfs,
            disks=(disk,),
            accel="tcg",
            icount=None,
            record=RecordReplay("record", rrfile, self.icount),
        )
        self._pending[number] = {
            "number": number,
            "backing": _rel(self.run_dir, self._top),
            "cache": disk.cache,
            "config": {name: _jsonable(getattr(recording, name)) for name in REPLAYED_FIELDS},
            "overlay_path": overlay,
            "rrfile_path": rrfile,
        }
        return recording

    def boot_done(self, number: int, boot_dir: Path, exit_how: str | None) -> dict[str, Any]:
        """Hash what boot ``number`` left (overlay, replay log, console) into the record."""
        entry = self._pending.pop(number)
        overlay: Path = entry.pop("overlay_path")
        rrfile: Path = entry.pop("rrfile_path")
        uart = boot_dir / "uart.log"
        entry.update(
            dir=_rel(self.run_dir, boot_dir),
            overlay=file_ref(self.run_dir, overlay),
            rrfile=file_ref(self.run_dir, rrfile) if rrfile.exists() else None,
            console=file_ref(self.run_dir, uart) if uart.exists() else None,
            exit=exit_how,
        )
        self.boots.append(entry)
        self._top, self._top_format = overlay, "qcow2"
        return entry

    def summary(self) -> dict[str, Any]:
        """The ``record`` section of ``run.json``."""
        return {
            "version": RECORD_VERSION,
            "qemu": self.qemu,
            "icount": self.icount,
            "base": self.base,
            "kernel": self.kernel_ref,
            "initramfs": self.initramfs_ref,
            "boots": list(self.boots),
        }


def replay_command(run_dir: Path, number: int) -> str:
    """The command that replays boot ``number`` of the recorded run in ``run_dir``."""
    return f"python -m harness replay {run_dir} --boot {number}"


def _rel(run_dir: Path, path: Path) -> str:
    try:
        return os.fspath(path.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return os.fspath(path.resolve())


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, Path):
        return os.fspath(value)
    return value
