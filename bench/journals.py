"""Building big journals fast, to measure replay on them.

A journal of a million commit groups built through real ``fdatasync`` calls would take an hour;
durability is not what is being measured here, so the store writes through a device whose
flush does nothing and the file is fsynced once at the end. The bytes on the device are exactly
what the store writes with real flushes (flushes do not change what is written, only when it
is safe), and automatic compaction is disabled so the journal really grows to the requested
number of records.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench.data import KEY_BYTES, VALUE_BYTES, make_dataset
from guest.statefs import FileBlockDevice, Store, StoreConfig
from guest.statefs.layout import OP_HEADER_BYTES, RECORD_HEADER_BYTES, round_up

#: Never compact by size while building (the region is sized to hold every record).
NO_AUTO_COMPACTION = StoreConfig(compact_min_bytes=1 << 62)
#: Room for the four largest records every region must hold, plus slack for a snapshot.
REGION_SLACK_BYTES = 20 << 20


class NoFlushFileDevice(FileBlockDevice):
    """A file device whose flush is a no-op (building only; see the module docstring)."""

    def _flush(self) -> None:
        return None


@dataclass(frozen=True)
class Journal:
    """A store on disk, ready to be reopened."""

    path: Path
    sector_size: int
    records: int
    live_keys: int
    journal_bytes: int
    build_seconds: float
    probe_key: str  # a live key: the reopen is "served" when this reads back


def record_bytes(sector_size: int) -> int:
    """Device bytes of a commit group holding one put of the benchmark's key and value."""
    return round_up(RECORD_HEADER_BYTES + OP_HEADER_BYTES + KEY_BYTES + VALUE_BYTES, sector_size)


def device_bytes(records: int, live_keys: int, sector_size: int) -> int:
    """A device whose regions hold ``records`` single-put groups or a snapshot of the keys."""
    per_key = OP_HEADER_BYTES + KEY_BYTES + VALUE_BYTES
    region = max(records * record_bytes(sector_size), 2 * live_keys * per_key)
    region = round_up(region + REGION_SLACK_BYTES, sector_size)
    return 2 * region + 2 * sector_size


def build(
    path: Path,
    *,
    records: int,
    live_keys: int,
    sector_size: int = 512,
    compact: bool = False,
) -> Journal:
    """Write ``records`` commit groups of one put each, cycling over ``live_keys`` keys.

    With ``compact``, the store is then compacted, so the journal is the snapshot of the live
    set (the state a long-running statefsd converges to).
    """
    data = make_dataset(live_keys, distinct_values=1024)
    FileBlockDevice.create(
        path, device_bytes(records, live_keys, sector_size), sector_size=sector_size
    )
    started = time.perf_counter()
    store = Store.format(NoFlushFileDevice(path, sector_size=sector_size), NO_AUTO_COMPACTION)
    put, sync = store.put, store.sync
    keys, values = data.keys, data.values
    for i in range(records):
        put(keys[i % live_keys], values[i % live_keys])
        sync()
    if compact:
        store.compact()
    journal_bytes = int(store.stats()["journal_bytes"])
    # Nothing is pending; sync=False also skips the checkpoint a clean close would make, so
    # the next open replays this journal as crash recovery does.
    store.close(sync=False)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)  # clean pages, so a cold-cache reopen can drop them
    finally:
        os.close(fd)
    return Journal(
        path=path,
        sector_size=sector_size,
        records=records,
        live_keys=min(live_keys, records),
        journal_bytes=journal_bytes,
        build_seconds=time.perf_counter() - started,
        probe_key=keys[(records - 1) % live_keys],
    )


def drop_cache(path: Path) -> None:
    """Evict ``path``'s (clean) pages from the page cache: the next open reads the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
