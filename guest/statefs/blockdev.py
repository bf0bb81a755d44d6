"""Block devices: the only thing the store knows about storage.

The interface is deliberately the one a disk offers: whole sectors at a logical block address,
and a flush that makes earlier writes durable. The store assumes nothing more (no atomic
multi-sector writes, not even an atomic single-sector write), which is what lets the same store
run on memory in tests, on a file on the host, and on the VM's raw virtio-blk disk.

I/O failures surface as :class:`OSError` from the implementation; the store turns them into
``StatefsError(EIO)`` and stops claiming durability.
"""

import errno
import os
import stat
import struct
from abc import ABC, abstractmethod

from guest.statefs.errors import StatefsError
from guest.statefs.layout import SECTOR_SIZES

# linux/fs.h: _IOR(0x12, 114, size_t) and _IO(0x12, 104).
BLKGETSIZE64 = 0x80081272
BLKSSZGET = 0x1268


class BlockDevice(ABC):
    """Fixed-size array of sectors with read, write, flush and close."""

    def __init__(self, sector_size: int, sector_count: int) -> None:
        if sector_size not in SECTOR_SIZES:
            raise StatefsError(errno.EINVAL, f"unsupported sector size {sector_size}")
        if sector_count <= 0:
            raise StatefsError(errno.EINVAL, f"sector count must be positive, got {sector_count}")
        self.sector_size = sector_size
        self.sector_count = sector_count
        self.closed = False

    def _check(self, lba: int, count: int) -> None:
        if self.closed:
            raise StatefsError(errno.EBADF, "block device is closed")
        if lba < 0 or count < 0 or lba + count > self.sector_count:
            raise StatefsError(
                errno.EINVAL,
                f"sectors {lba}..{lba + count} outside device of {self.sector_count} sectors",
            )

    def read(self, lba: int, count: int) -> bytes:
        """Read ``count`` whole sectors starting at ``lba``."""
        self._check(lba, count)
        return self._read(lba, count)

    def write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        """Write whole sectors starting at ``lba``; durable only after :meth:`flush`."""
        if len(data) % self.sector_size:
            raise StatefsError(
                errno.EINVAL,
                f"write of {len(data)} bytes is not whole {self.sector_size}-byte sectors",
            )
        self._check(lba, len(data) // self.sector_size)
        if data:
            self._write(lba, data)

    def flush(self) -> None:
        """Make every completed write durable (a barrier: nothing written later overtakes it)."""
        if self.closed:
            raise StatefsError(errno.EBADF, "block device is closed")
        self._flush()

    def invalidate_cache(self) -> None:
        """Drop any cached copy of the device's contents, so the next reads come from the
        device itself (used before a replay that is meant to prove what is on the disk)."""
        return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._close()

    def __enter__(self) -> "BlockDevice":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def size_bytes(self) -> int:
        return self.sector_size * self.sector_count

    @abstractmethod
    def _read(self, lba: int, count: int) -> bytes: ...

    @abstractmethod
    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None: ...

    @abstractmethod
    def _flush(self) -> None: ...

    def _close(self) -> None:
        """Release resources; the default has none."""
        return None


class MemoryBlockDevice(BlockDevice):
    """A device in a bytearray; flush is a no-op because nothing can be lost.

    Tests crash a store by dropping it and opening a new store on ``MemoryBlockDevice(image=...)``
    with a copy of :attr:`data`.
    """

    def __init__(self, sector_size: int = 512, sector_count: int = 2048, *, image: bytes = b""):
        super().__init__(sector_size, sector_count)
        self.data = bytearray(sector_size * sector_count)
        if image:
            if len(image) != len(self.data):
                raise StatefsError(errno.EINVAL, "image size does not match the device size")
            self.data[:] = image

    @classmethod
    def from_image(cls, image: bytes, sector_size: int = 512) -> "MemoryBlockDevice":
        if len(image) % sector_size:
            raise StatefsError(errno.EINVAL, "image is not a whole number of sectors")
        return cls(sector_size, len(image) // sector_size, image=image)

    def _read(self, lba: int, count: int) -> bytes:
        start = lba * self.sector_size
        return bytes(self.data[start : start + count * self.sector_size])

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        start = lba * self.sector_size
        self.data[start : start + len(data)] = data

    def _flush(self) -> None:
        return None


class _FdBlockDevice(BlockDevice):
    """Shared pread/pwrite/fdatasync plumbing for file and raw devices."""

    def __init__(self, fd: int, sector_size: int, sector_count: int, path: str) -> None:
        self.path = path
        self._fd = fd
        try:
            super().__init__(sector_size, sector_count)
        except BaseException:
            os.close(fd)
            raise

    def _read(self, lba: int, count: int) -> bytes:
        want = count * self.sector_size
        offset = lba * self.sector_size
        chunks = []
        while want:
            chunk = os.pread(self._fd, want, offset)
            if not chunk:
                raise OSError(errno.EIO, f"short read from {self.path} at byte {offset}")
            chunks.append(chunk)
            want -= len(chunk)
            offset += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        offset = lba * self.sector_size
        while view:
            written = os.pwrite(self._fd, view, offset)
            if written <= 0:
                # pwrite returning 0 for a non-empty buffer would loop forever; like a short
                # read, it means the device cannot take the data.
                raise OSError(errno.EIO, f"write to {self.path} at byte {offset} made no progress")
            view = view[written:]
            offset += written

    def _flush(self) -> None:
        os.fdatasync(self._fd)

    def _close(self) -> None:
        os.close(self._fd)


class FileBlockDevice(_FdBlockDevice):
    """A regular file as a disk: ``os.pwrite`` + ``os.fdatasync``, size fixed at creation."""

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        size_bytes: int,
        *,
        sector_size: int = 512,
        zero_fill: bool = False,
    ) -> "FileBlockDevice":
        """Create (or truncate) ``path`` to ``size_bytes``.

        ``zero_fill`` writes every byte once so later writes overwrite allocated blocks and
        ``fdatasync`` has no allocation metadata to commit (what a real disk behaves like).
        """
        if size_bytes <= 0 or size_bytes % sector_size:
            raise StatefsError(
                errno.EINVAL, f"size {size_bytes} is not whole {sector_size}-byte sectors"
            )
        fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            if zero_fill:
                chunk = bytes(min(size_bytes, 1 << 20))
                offset = 0
                while offset < size_bytes:
                    offset += os.pwrite(fd, chunk[: size_bytes - offset], offset)
                os.fsync(fd)
            else:
                os.ftruncate(fd, size_bytes)
        finally:
            os.close(fd)
        return cls(path, sector_size=sector_size)

    def __init__(
        self, path: str | os.PathLike[str], *, sector_size: int = 512, read_only: bool = False
    ) -> None:
        """``read_only`` opens the file O_RDONLY: any write then fails (EBADF), so a tool that
        must not change an image cannot, whatever the code above it does."""
        path = os.fspath(path)
        fd = os.open(path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
        size = os.fstat(fd).st_size
        if size == 0 or size % sector_size:
            os.close(fd)
            raise StatefsError(
                errno.EINVAL, f"{path}: size {size} is not a positive multiple of {sector_size}"
            )
        super().__init__(fd, sector_size, size // sector_size, path)


class RawBlockDevice(_FdBlockDevice):
    """A Linux block device node such as the VM's ``/dev/vda``.

    Size and sector size come from the kernel (``BLKGETSIZE64``, ``BLKSSZGET``), never from a
    guess. Writes go through the block device's page cache; ``fdatasync`` writes them back and
    sends the device a cache flush (a virtio-blk FLUSH request), which is the durability point.
    """

    def __init__(self, path: str = "/dev/vda") -> None:
        import fcntl

        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            if not stat.S_ISBLK(os.fstat(fd).st_mode):
                raise StatefsError(errno.ENOTBLK, f"{path} is not a block device")
            size_bytes = struct.unpack("Q", fcntl.ioctl(fd, BLKGETSIZE64, bytes(8)))[0]
            sector_size = struct.unpack("i", fcntl.ioctl(fd, BLKSSZGET, bytes(4)))[0]
        except BaseException:
            os.close(fd)
            raise
        super().__init__(fd, sector_size, size_bytes // sector_size, path)

    def invalidate_cache(self) -> None:
        """Write back and drop the kernel's page cache for this device, so the next reads
        come from the disk.

        ``BLKFLSBUF`` needs CAP_SYS_ADMIN, which statefsd (its own unprivileged user) does not
        have; ``fdatasync`` then ``POSIX_FADV_DONTNEED`` on the device does the same for its
        pages without privilege (all of them are clean once written back).
        """
        os.fdatasync(self._fd)
        os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)


def open_block_device(path: str, *, sector_size: int = 512) -> BlockDevice:
    """Open ``path`` as a raw block device if it is one, otherwise as a file-backed device."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise StatefsError(errno.ENOENT, f"{path}: no such device or file") from None
    if stat.S_ISBLK(mode):
        return RawBlockDevice(path)
    return FileBlockDevice(path, sector_size=sector_size)
