"""Error messages users act on."""

import errno
from pathlib import Path

import pytest

from harness.image import cache
from harness.image.errors import DiskFull, ImageError, ToolMissing


def test_disk_full_says_where_and_what_to_do(tmp_path: Path) -> None:
    error = DiskFull(tmp_path / "not" / "there")
    assert isinstance(error, ImageError)
    assert "MiB free" in str(error)
    assert "STATEFS_QEMU_CACHE" in str(error)


def test_enospc_while_writing_becomes_disk_full(tmp_path: Path, monkeypatch) -> None:
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "open", full)
    with pytest.raises(DiskFull):
        cache.write_atomic(tmp_path / "x", b"data")


def test_missing_tool_names_the_package() -> None:
    error = ToolMissing("dpkg-deb", "dpkg")
    assert "apt-get install dpkg" in str(error)


def test_cache_location_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATEFS_QEMU_CACHE", str(tmp_path / "c"))
    assert cache.cache_root() == tmp_path / "c"
    monkeypatch.delenv("STATEFS_QEMU_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "xdg" / "statefs-qemu"
