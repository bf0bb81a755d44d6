"""Writing dm-log-writes logs in tests: the bytes QEMU's blklogwrites would write, built by hand
or by a block device that logs what a host store running the power-cut workload does to it."""

from __future__ import annotations

import struct

from guest.selftest.powercut import write
from guest.statefs import Store
from guest.statefs.blockdev import MemoryBlockDevice
from harness.crashlog.logformat import (
    ENTRY,
    FLAG_DISCARD,
    FLAG_FLUSH,
    FLAG_MARK,
    LOG_MAGIC,
    LOG_VERSION,
    SUPER,
)


class LogWriter:
    """Appends entries; the super entry's count is updated at each flush, as QEMU does."""

    def __init__(self, sector_size: int = 512) -> None:
        self.ss = sector_size
        self.body = bytearray()
        self.entries = 0
        self.counted = 0
        self.count_all = False

    def _entry(self, sector: int, nr: int, flags: int, data: bytes = b"", data_len: int = 0):
        head = ENTRY.pack(sector, nr, flags, data_len)
        if flags & FLAG_MARK:
            blob = head + data
            blob += bytes(-len(blob) % self.ss)
        else:
            blob = head + bytes(self.ss - ENTRY.size) + data
        self.body += blob
        self.entries += 1

    def write(self, sector: int, data: bytes, flags: int = 0) -> LogWriter:
        self._entry(sector, len(data) // self.ss, flags, data)
        return self

    def flush(self) -> LogWriter:
        self._entry(0, 0, FLAG_FLUSH)
        self.counted = self.entries
        return self

    def discard(self, sector: int, count: int) -> LogWriter:
        self._entry(sector, count, FLAG_DISCARD)
        return self

    def mark(self, text: str) -> LogWriter:
        raw = text.encode()
        self._entry(0, 0, FLAG_MARK, raw, len(raw))
        return self

    def bytes(self, *, nr_entries: int | None = None, magic: int = LOG_MAGIC) -> bytes:
        count = self.counted if nr_entries is None else nr_entries
        head = SUPER.pack(magic, LOG_VERSION, count, self.ss)
        return head + bytes(self.ss - SUPER.size) + bytes(self.body)


class LoggingDevice(MemoryBlockDevice):
    """A memory disk that logs every write and flush, like a disk behind blklogwrites.
    ``drop_flushes``: a broken disk that acknowledges flushes it never logs (a mutant)."""

    def __init__(self, sector_size: int, sector_count: int, *, drop_flushes: bool = False):
        super().__init__(sector_size, sector_count)
        self.log = LogWriter(sector_size)
        self.drop_flushes = drop_flushes

    def _write(self, lba: int, data) -> None:
        super()._write(lba, data)
        self.log.write(lba, bytes(data))

    def _flush(self) -> None:
        super()._flush()
        if not self.drop_flushes:
            self.log.flush()
        else:
            self.log.counted = self.log.entries


def pack_super(magic: int, version: int, count: int, sector_size: int) -> bytes:
    return struct.pack("<QQQI", magic, version, count, sector_size).ljust(sector_size, b"\0")


NONCE = "0123abcd"
SECTORS = 1280  # 640 KiB: the smallest store statefsd formats, so it compacts often


class StoreClient:
    """What the workload's writer needs of a statefsd client, over a host store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def batch(self, operations) -> None:
        self.store.write_batch(operations)
        self.store.sync()


def run_workload(writes: int, *, drop_flushes: bool = False) -> LoggingDevice:
    device = LoggingDevice(512, SECTORS, drop_flushes=drop_flushes)
    store, formatted = Store.open_or_format(device)
    assert formatted
    assert write(StoreClient(store), NONCE, 0, writes) == writes
    return device
