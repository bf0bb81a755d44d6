"""Block devices: whole sectors, bounds, durability plumbing, and the raw-device ioctl path."""

import errno
import os
import shutil
import subprocess

import pytest

from guest.statefs import (
    FileBlockDevice,
    MemoryBlockDevice,
    RawBlockDevice,
    StatefsError,
    open_block_device,
)


def test_memory_device_reads_back_whole_sectors():
    dev = MemoryBlockDevice(512, 16)
    dev.write(3, b"a" * 512 + b"b" * 512)
    assert dev.read(3, 2) == b"a" * 512 + b"b" * 512
    assert dev.read(0, 1) == bytes(512)
    assert dev.size_bytes == 8192


@pytest.mark.parametrize(("lba", "count"), [(-1, 1), (15, 2), (16, 1)])
def test_out_of_range_is_einval(lba, count):
    dev = MemoryBlockDevice(512, 16)
    with pytest.raises(StatefsError) as info:
        dev.read(lba, count)
    assert info.value.errno == errno.EINVAL


def test_partial_sector_write_is_rejected():
    dev = MemoryBlockDevice(512, 16)
    with pytest.raises(StatefsError) as info:
        dev.write(0, b"x" * 100)
    assert info.value.errno == errno.EINVAL


def test_unsupported_sector_size():
    with pytest.raises(StatefsError):
        MemoryBlockDevice(500, 16)


def test_closed_device_is_ebadf():
    dev = MemoryBlockDevice(512, 16)
    dev.close()
    with pytest.raises(StatefsError) as info:
        dev.read(0, 1)
    assert info.value.errno == errno.EBADF


def test_file_device_persists_across_reopen(tmp_path):
    path = tmp_path / "disk.img"
    with FileBlockDevice.create(path, 64 * 1024, sector_size=4096) as dev:
        assert (dev.sector_size, dev.sector_count) == (4096, 16)
        dev.write(2, b"z" * 4096)
        dev.flush()
    with FileBlockDevice(path, sector_size=4096) as dev:
        assert dev.read(2, 1) == b"z" * 4096
    assert os.path.getsize(path) == 64 * 1024


def test_file_device_zero_fill_allocates(tmp_path):
    path = tmp_path / "disk.img"
    FileBlockDevice.create(path, 1 << 20, zero_fill=True).close()
    assert os.stat(path).st_blocks * 512 >= 1 << 20


def test_file_device_rejects_a_size_that_is_not_whole_sectors(tmp_path):
    path = tmp_path / "odd.img"
    path.write_bytes(b"x" * 1000)
    with pytest.raises(StatefsError) as info:
        FileBlockDevice(path)
    assert info.value.errno == errno.EINVAL


def test_raw_device_refuses_a_regular_file(tmp_path):
    path = tmp_path / "plain.img"
    path.write_bytes(bytes(4096))
    with pytest.raises(StatefsError) as info:
        RawBlockDevice(str(path))
    assert info.value.errno == errno.ENOTBLK


def test_open_block_device_picks_file_for_regular_files(tmp_path):
    path = tmp_path / "disk.img"
    FileBlockDevice.create(path, 8192).close()
    with open_block_device(str(path)) as dev:
        assert isinstance(dev, FileBlockDevice)
    with pytest.raises(StatefsError) as info:
        open_block_device(str(tmp_path / "missing"))
    assert info.value.errno == errno.ENOENT


@pytest.fixture
def loop_device(tmp_path):
    """A real Linux block device (loop) over a file, when this machine allows it."""
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("needs root and losetup")
    backing = tmp_path / "loop.img"
    backing.write_bytes(bytes(2 << 20))
    attached = subprocess.run(
        ["losetup", "--find", "--show", "--sector-size", "4096", str(backing)],
        capture_output=True,
        text=True,
        check=False,
    )
    if attached.returncode != 0:
        pytest.skip(f"no loop devices here: {attached.stderr.strip()}")
    path = attached.stdout.strip()
    try:
        yield path
    finally:
        subprocess.run(["losetup", "-d", path], check=False)


def test_raw_device_reads_size_and_sector_size_from_the_kernel(loop_device):
    with RawBlockDevice(loop_device) as dev:
        assert dev.sector_size == 4096
        assert dev.sector_count == (2 << 20) // 4096
        dev.write(1, b"q" * 4096)
        dev.flush()
        assert dev.read(1, 1) == b"q" * 4096
    with open_block_device(loop_device) as dev:
        assert isinstance(dev, RawBlockDevice)


def test_a_write_that_makes_no_progress_is_eio_not_a_hang(tmp_path, monkeypatch):
    """pwrite returning 0 (a device that takes nothing) must end the write loop with EIO."""
    path = tmp_path / "disk.img"
    dev = FileBlockDevice.create(path, 64 * 512)
    calls = []

    def stuck(fd, data, offset):
        calls.append(offset)
        if len(calls) > 100:
            raise RuntimeError("the write loop does not stop on a write that makes no progress")
        return 0 if len(calls) > 1 else 100  # some progress, then none

    monkeypatch.setattr(os, "pwrite", stuck)
    with pytest.raises(OSError) as info:
        dev.write(1, bytes(512))
    assert info.value.errno == errno.EIO
    assert "made no progress" in str(info.value)
    assert calls == [512, 612]


def test_a_read_only_file_device_cannot_write(tmp_path):
    path = tmp_path / "disk.img"
    FileBlockDevice.create(path, 64 * 512).close()
    dev = FileBlockDevice(path, read_only=True)
    assert dev.read(0, 1) == bytes(512)
    with pytest.raises(OSError):
        dev.write(0, b"x" * 512)
    assert path.read_bytes() == bytes(64 * 512)
