"""Compaction: the live set rewritten as a fresh journal for the other region.

Building the snapshot is pure (bytes in, records out) so it is tested without a device.
:class:`CompactionCommit` (a part of the store) writes it: first a superblock reserving the new
epoch, then the records into the inactive region, a flush, and only then the superblock that
names that region. That last superblock write is the single commit point: a crash before it
leaves the old region and the old superblock untouched, a crash during it leaves a superblock
copy whose CRC fails, so the older copy (old state, whole) wins.
"""

import errno
from collections.abc import Iterator, Mapping

from guest.statefs.config import StoreConfig
from guest.statefs.errors import StatefsError
from guest.statefs.journal import JournalWriter
from guest.statefs.layout import (
    EPOCH_MASK,
    FLAG_SNAPSHOT,
    FLAG_SNAPSHOT_END,
    JOURNAL_PUT,
    KIND_TXN,
    MAX_OP_BYTES,
    OP_HEADER_BYTES,
    RECORD_HEADER_BYTES,
    Superblock,
    append_op,
    encode_record,
)

#: The live set may fill at most this fraction of a region (LIVE_FILL_NUM / LIVE_FILL_DEN), so
#: a region just compacted still has room for new commit groups.
LIVE_FILL_NUM, LIVE_FILL_DEN = 7, 8


def snapshot_records(
    live: Mapping[str, bytes],
    *,
    epoch: int,
    salt: int,
    sector_size: int,
    record_limit: int,
) -> Iterator[bytes]:
    """Yield the snapshot's records (seq 1, 2, ...), keys in sorted order for determinism.

    Each carries ``FLAG_SNAPSHOT`` and the last one also ``FLAG_SNAPSHOT_END`` (an empty live
    set gives one record of no operations), so a reader can tell a complete snapshot, and the
    commit groups appended after it, without the superblock that names the region."""
    payload_limit = record_limit - RECORD_HEADER_BYTES
    payload = bytearray()
    ops = 0
    seq = 1
    for key in sorted(live):
        value = live[key]
        encoded = key.encode("utf-8")
        size = OP_HEADER_BYTES + len(encoded) + len(value)
        if ops and len(payload) + size > payload_limit:
            yield encode_record(
                kind=KIND_TXN, epoch=epoch, seq=seq, op_count=ops, payload=payload,
                salt=salt, sector_size=sector_size, flags=FLAG_SNAPSHOT,
            )  # fmt: skip
            seq += 1
            payload = bytearray()
            ops = 0
        append_op(payload, JOURNAL_PUT, encoded, value)
        ops += 1
    yield encode_record(
        kind=KIND_TXN, epoch=epoch, seq=seq, op_count=ops, payload=payload,
        salt=salt, sector_size=sector_size, flags=FLAG_SNAPSHOT | FLAG_SNAPSHOT_END,
    )  # fmt: skip


def snapshot_bytes_bound(live_bytes: int, live_keys: int, sector_size: int, record_limit: int):
    """Upper bound on the bytes :func:`snapshot_records` produces for a live set.

    ``live_bytes`` counts each live entry as one PUT operation (op header + key + value). Each
    record but the last is closed only when the next operation does not fit, so it holds more
    than ``record_limit - header - MAX_OP_BYTES`` payload bytes; every record adds at most its
    header and one sector of padding.
    """
    if live_keys == 0:
        return RECORD_HEADER_BYTES + sector_size  # one record of no operations
    per_record = record_limit - RECORD_HEADER_BYTES - MAX_OP_BYTES
    records = live_keys if per_record <= 0 else min(live_keys, live_bytes // per_record + 1)
    return live_bytes + records * (RECORD_HEADER_BYTES + sector_size)


def live_room(sb: Superblock) -> int:
    """The most bytes a snapshot of the live set may take (see ``LIVE_FILL_NUM``)."""
    return sb.region_bytes * LIVE_FILL_NUM // LIVE_FILL_DEN


def surely_fits_below(sb: Superblock) -> int:
    """Live-set size under which the ENOSPC check cannot fail, whatever the key count, so
    ``put`` can skip computing the snapshot bound (-1 when no such shortcut exists)."""
    room = live_room(sb)
    per_record = sb.record_limit - RECORD_HEADER_BYTES - MAX_OP_BYTES
    overhead = RECORD_HEADER_BYTES + sb.sector_size
    if per_record <= 0:
        return -1
    # bound(x) <= x + (x / per_record + 1) * overhead <= room
    return int((room - overhead) * per_record / (per_record + overhead)) - 1


class CompactionCommit(JournalWriter):
    """The store's compaction: when to compact, and the three-step switch to a new region."""

    _slot: int
    _peer_damaged: bool
    _config: StoreConfig
    _live: dict[str, bytes] | None
    _live_bytes: int

    def _live_map(self) -> dict[str, bytes]:
        if self._live is None:
            raise StatefsError(errno.EBADF, "store is closed")
        return self._live

    def _should_compact(self, record_bytes: int) -> bool:
        end = self._offset + record_bytes
        if end > self._sb.region_bytes:
            return True
        config = self._config
        if end <= config.compact_min_bytes:
            return False
        snapshot = snapshot_bytes_bound(
            self._live_bytes, len(self._live_map()), self._sb.sector_size, self._sb.record_limit
        )
        return end > config.compact_garbage_ratio * max(snapshot, self._sb.sector_size)

    def _next_epoch(self) -> int:
        """The epoch for the next compaction: above every epoch any record was ever written with.

        The current superblock's ``epoch_ceiling`` is the highest epoch a compaction was ever
        allowed to use (each compaction raises it, durably, before writing a record). If the
        other superblock copy is damaged it may have been a reservation one higher that this
        copy never saw, so that epoch is skipped too.
        """
        step = 2 if self._peer_damaged else 1
        return (self._sb.epoch_ceiling + step) & EPOCH_MASK

    def _write_superblock(self, sb: Superblock) -> None:
        """Write ``sb`` into the copy that is not current and flush; it then is current."""
        slot = 1 - self._slot
        self._io(self._dev.write, slot, sb.encode())
        self._io(self._dev.flush)
        self._sb = sb
        self._slot = slot
        self._peer_damaged = False
        self.counters["bytes_written"] += sb.sector_size
        self.counters["flushes"] += 1

    def _compact(self) -> None:
        sb = self._sb
        target = 1 - sb.active_region
        epoch = self._next_epoch()
        records = list(
            snapshot_records(
                self._live_map(), epoch=epoch, salt=sb.salt, sector_size=sb.sector_size,
                record_limit=sb.record_limit,
            )
        )  # fmt: skip
        total = sum(len(record) for record in records)
        if total > sb.region_bytes:
            raise StatefsError(errno.ENOSPC, f"live set needs {total} bytes, region holds "
                               f"{sb.region_bytes}")  # fmt: skip
        # 1. Reserve the epoch: the same state, with the ceiling raised, durable before any
        # record of that epoch exists. A compaction cut after this point leaves records of
        # ``epoch`` in the target region, and the next compaction takes a higher epoch, so
        # those records can never be read as part of a later journal of that region.
        self._write_superblock(sb.replace(generation=sb.generation + 1, epoch_ceiling=epoch))
        # 2. The snapshot, flushed before the superblock that names it.
        lba = sb.region_start(target)
        for record in records:
            self._io(self._dev.write, lba, record)
            lba += len(record) // sb.sector_size
        self._io(self._dev.flush)
        # 3. The commit point: the superblock naming the target region.
        self._write_superblock(
            self._sb.replace(
                generation=self._sb.generation + 1,
                epoch=epoch,
                active_region=target,
                snapshot_sectors=total // sb.sector_size,
            )
        )
        self._offset = total
        self._seq = len(records) + 1
        self.counters["compactions"] += 1
        self.counters["records_written"] += len(records)
        self.counters["bytes_written"] += total
        self.counters["flushes"] += 1
