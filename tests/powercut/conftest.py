"""Fixtures of the power-cut tests: a backing file with recognisable old data, a state dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

DISK_BYTES = 64 * 1024


@pytest.fixture
def backing(tmp_path: Path) -> Path:
    """A 64 KiB backing file whose every 512-byte sector holds its own index (old data)."""
    path = tmp_path / "disk.img"
    path.write_bytes(b"".join(bytes([i % 251]) * 512 for i in range(DISK_BYTES // 512)))
    return path


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


Reader = Callable[[int, int], bytes]


@pytest.fixture
def read_backing(backing: Path) -> Reader:
    def read(offset: int, length: int) -> bytes:
        with open(backing, "rb") as handle:
            handle.seek(offset)
            return handle.read(length)

    return read
