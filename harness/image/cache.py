"""Where the builder keeps things between runs, and the locks that let runs share them.

* the **cache** (outside the checkout, shared by every checkout of this user):
  ``$STATEFS_QEMU_CACHE`` or ``$XDG_CACHE_HOME/statefs-qemu`` or ``~/.cache/statefs-qemu``,
  holding ``apt/<debian-arch>/`` (private apt root: lists and verified .debs),
  ``trees/<arch>/<key>/`` (unpacked packages) and ``stdlib-closure/`` (modulefinder results);
* the **segment store** in the build directory: each initramfs segment with the key it was
  built for (and its sha256: a damaged segment is rebuilt, not packed), so a rebuild repacks
  only what changed.

pytest-xdist workers may all call ``ensure_image`` at once, so builds take an exclusive
``flock`` on the output directory and on the cache while they change them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.atomic import json_bytes, write_bytes
from harness.image.errors import DiskFull, is_disk_full
from harness.image.layout import Segment

log = logging.getLogger(__name__)

CACHE_ENV = "STATEFS_QEMU_CACHE"


def cache_root() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "statefs-qemu"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, data: bytes) -> None:
    """:func:`harness.atomic.write_bytes`, with a full disk reported as :class:`DiskFull`."""
    try:
        write_bytes(path, data)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull(path, exc) from exc
        raise


class SegmentStore:
    """Segments saved as ``<name>.cpio`` + ``<name>.json`` (key and bookkeeping)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def load(self, name: str, key: str) -> Segment | None:
        meta_path = self.directory / f"{name}.json"
        data_path = self.directory / f"{name}.cpio"
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("key") != key:
                return None
            data = data_path.read_bytes()
        except (OSError, ValueError):
            return None
        if len(data) != meta.get("size"):
            return None
        if "sha256" in meta and hashlib.sha256(data).hexdigest() != meta["sha256"]:
            log.warning("segment %s does not match its sha256: rebuilding it", data_path)
            return None
        return Segment(
            data,
            frozenset(meta["dirs"]),
            int(meta["next_ino"]),
            frozenset(meta["libraries"]),
            dict(meta["info"]),
        )

    def save(self, name: str, key: str, segment: Segment) -> None:
        write_atomic(self.directory / f"{name}.cpio", segment.data)
        meta = {
            "key": key,
            "size": len(segment.data),
            "sha256": hashlib.sha256(segment.data).hexdigest(),
            "dirs": sorted(segment.dirs),
            "next_ino": segment.next_ino,
            "libraries": sorted(segment.libraries),
            "info": segment.info,
        }
        write_atomic(self.directory / f"{name}.json", json_bytes(meta, indent=1))
