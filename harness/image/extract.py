"""Unpack the pinned .deb files into a package tree in the cache, once per set of pins.

``dpkg-deb -x`` only writes files (no maintainer scripts, no dpkg database), so the host's dpkg
state is never touched. The kernel package is by far the largest part (about 400 MB unpacked,
almost all of it modules the guest never loads), so after unpacking we keep only the kernel
image, ``modules.builtin`` and the modules the recipe needs; the tree is then about 60 MB.
The finished tree is renamed into place, so a crash mid-extraction leaves no half tree that a
later build would trust.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from harness.image.errors import DiskFull, ImageError, ToolMissing, is_disk_full

log = logging.getLogger(__name__)


def unpack(debs: Sequence[Path], dest: Path) -> None:
    """``dpkg-deb -x`` every package into ``dest``, two at a time (the host has 2 cores and
    the kernel package alone takes most of the time)."""
    if shutil.which("dpkg-deb") is None:
        raise ToolMissing("dpkg-deb", "dpkg")
    dest.mkdir(parents=True, exist_ok=True)
    order = sorted(debs, key=lambda deb: deb.stat().st_size, reverse=True)
    running: list[tuple[Path, subprocess.Popen[bytes]]] = []
    try:
        for deb in order:
            running.append((deb, _start(deb, dest)))
            if len(running) >= 2:
                _finish(*running.pop(0), dest)
        while running:
            _finish(*running.pop(0), dest)
    finally:
        for _, proc in running:
            proc.kill()
            proc.wait()


def _start(deb: Path, dest: Path) -> subprocess.Popen[bytes]:
    log.debug("dpkg-deb -x %s", deb.name)
    return subprocess.Popen(
        ["dpkg-deb", "-x", str(deb), str(dest)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _finish(deb: Path, proc: subprocess.Popen[bytes], dest: Path) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        message = err.decode("utf-8", "replace").strip()
        if "No space left" in message:
            raise DiskFull(dest)
        raise ImageError(f"dpkg-deb -x {deb} failed (exit {proc.returncode}): {message}")


def prune_kernel_modules(moddir: Path, keep: Sequence[str]) -> None:
    """Delete every file under ``moddir/kernel`` except the relative paths in ``keep``."""
    keep_set = {moddir / rel for rel in keep}
    kernel_dir = moddir / "kernel"
    for root, _dirs, files in os.walk(kernel_dir, topdown=False):
        for name in files:
            path = Path(root, name)
            if path not in keep_set:
                path.unlink()
        if root != str(kernel_dir) and not os.listdir(root):
            os.rmdir(root)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished directory into place (an older one with that name is removed)."""
    try:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull(final, exc) from exc
        raise
