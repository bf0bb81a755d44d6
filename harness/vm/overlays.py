"""qcow2 overlays and file hashes: how a recorded run keeps every boot's starting disk.

``blkreplay`` logs the order in which disk requests complete, not their data, so a replay must
start from exactly the disk its boot started from. A recorded run therefore never writes the
base image: boot 1 writes into ``boot1.qcow2`` (backed by the base), boot 2 into
``boot2.qcow2`` (backed by ``boot1.qcow2``), and so on. Boot 2 sees boot 1's writes through the
chain, and the disk boot N started from is the chain below its own overlay, untouched since.
A replay of boot N writes into a scratch overlay over that chain, so it can be replayed again.

Backing files are named relative to the overlay when they are in the same run directory, so a
run directory copied off a CI machine still opens. The overlays come from ``qemu-img``
(Debian's ``qemu-utils``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from harness.errors import ConfigError, DependencyMissing, HarnessError

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The file's SHA-256, hex (read in 1 MiB chunks; a sparse 64 MiB disk takes ~0.1 s)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def qemu_img() -> str:
    """The ``qemu-img`` binary, or :class:`DependencyMissing` saying which package has it."""
    path = shutil.which("qemu-img")
    if path is None:
        raise DependencyMissing(
            "qemu-img not found: recording a run needs it (apt install qemu-utils)"
        )
    return path


def _run_qemu_img(args: list[str]) -> str:
    argv = [qemu_img(), *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HarnessError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def backing_name(backing: Path, overlay: Path) -> str:
    """How ``overlay`` names ``backing``: relative when they share the overlay's tree."""
    backing, overlay = backing.resolve(), overlay.resolve()
    relative = os.path.relpath(backing, overlay.parent)
    return relative if not relative.startswith("../../") else os.fspath(backing)


def create_overlay(overlay: Path, backing: Path, backing_format: str) -> Path:
    """A new, empty qcow2 ``overlay`` over ``backing`` (which is never written through it)."""
    if backing_format not in ("raw", "qcow2"):
        raise ConfigError(f"overlay backing format {backing_format!r}: raw or qcow2")
    if overlay.exists():
        raise ConfigError(f"{overlay} already exists: an overlay is never reused")
    overlay.parent.mkdir(parents=True, exist_ok=True)
    name = backing_name(backing, overlay)
    _run_qemu_img(["create", "-q", "-f", "qcow2", "-b", name, "-F", backing_format, str(overlay)])
    return overlay


def backing_chain(image: Path) -> list[str]:
    """The image and every backing file below it, as ``qemu-img info`` resolves them."""
    out = _run_qemu_img(["info", "--backing-chain", "--output=json", "-U", str(image)])
    return [entry["filename"] for entry in json.loads(out)]
