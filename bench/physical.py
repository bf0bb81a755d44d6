"""The physical limit: how many durable writes per second this disk can take at all.

A durable put needs at least one write and one ``fdatasync`` that waits for the disk, so a
loop of ``pwrite`` + ``fdatasync`` of one 4 KiB block at sequential offsets, into a file
whose blocks are already allocated (zero-filled, like a raw disk), is the ceiling any
store's durable puts are compared to. 512-byte writes are measured too: the page cache and
the filesystem still write back whole 4 KiB blocks, so they should cost about the same, which
is why statefs's sector size matters less for durable puts than it seems.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: Zero-filled ahead of the loop so no write allocates blocks (fdatasync then has no metadata
#: to commit, as on a raw block device).
FILE_BYTES = 16 << 20


def preallocate(path: Path, size: int = FILE_BYTES) -> None:
    """Create ``path`` with ``size`` zero bytes actually written, then fsync it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        chunk = bytes(1 << 20)
        offset = 0
        while offset < size:
            offset += os.pwrite(fd, chunk[: size - offset], offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_writes(path: Path, block: int, count: int) -> tuple[float, list[float]]:
    """``count`` x (``pwrite`` of ``block`` bytes at the next offset + ``fdatasync``): returns
    the start time and ``perf_counter()`` after each write, like the engines' durable loops.

    ``path`` must be preallocated; offsets wrap around inside it.
    """
    size = os.path.getsize(path)
    data = os.urandom(block)
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        offset = 0
        stamps = []
        started = time.perf_counter()
        for _ in range(count):
            os.pwrite(fd, data, offset)
            os.fdatasync(fd)
            stamps.append(time.perf_counter())
            offset += block
            if offset + block > size:
                offset = 0
    finally:
        os.close(fd)
    return started, stamps
