"""The statefs store: a journaled key/value map over a block device.

Writes (``put``, ``delete``) change the in-memory map at once and are appended to the pending
commit group; ``sync()`` writes the group as one record at the end of the active region and
flushes. ``sync()`` is the commit point: after it returns, every change made before it is
durable, as a unit; a crash before it returns leaves either all of them or none.

Invariants the design argues for (``docs/storage/statefs.md`` has the full argument):

* a record is written once, at a sector boundary, into sectors no committed record uses, so a
  sector holding synced records is never rewritten;
* every record and superblock carries a CRC-32C, and records carry the superblock's epoch and
  a CRC salted with the volume id; a compaction makes its new epoch durable (the superblock's
  ``epoch_ceiling``) before writing a record of it, so no epoch is ever used twice and stale
  bytes of an earlier use of a region are never replayed;
* compaction writes the live set into the other region and switches over with one superblock
  write, the single commit point.

After an I/O error the store refuses further writes (``EIO``) until reopened: what reached the
disk is unknown, and replay on reopen is the only honest way to find out.
"""

import errno
import os
import time
from collections.abc import Iterable

from guest.statefs.blank import describe_non_blank
from guest.statefs.blockdev import BlockDevice
from guest.statefs.compaction import snapshot_bytes_bound, snapshot_records
from guest.statefs.crc import BACKEND as CRC_BACKEND
from guest.statefs.errors import CorruptionError, StatefsError, UnformattedError
from guest.statefs.layout import (
    DEFAULT_RECORD_LIMIT,
    EPOCH_MASK,
    KIND_TXN,
    MAX_OP_BYTES,
    MAX_VALUE_BYTES,
    MIN_RECORDS_PER_REGION,
    OP_DELETE,
    OP_HEADER,
    OP_HEADER_BYTES,
    OP_PUT,
    RECORD_HEADER_BYTES,
    RECORD_MAGIC,
    REGION_COUNT,
    SUPERBLOCK_SLOTS,
    Superblock,
    encode_record,
    min_record_limit,
)
from guest.statefs.paths import is_normal_key, normalize_key, normalize_prefix
from guest.statefs.replay import ReplayResult, replay
from guest.statefs.superblock import read_slots
from guest.statefs.superblock import select as select_superblock
from guest.values import Value

BytesLike = bytes | bytearray | memoryview

#: A clean close compacts a journal longer than this many fresh snapshots...
CLOSE_COMPACT_RATIO = 2
#: ...and longer than this (a short journal replays fast anyway).
CLOSE_COMPACT_MIN_BYTES = 256 * 1024

#: The live set may fill at most this fraction of a region (LIVE_FILL_NUM / LIVE_FILL_DEN), so
#: a region just compacted still has room for new commit groups.
LIVE_FILL_NUM, LIVE_FILL_DEN = 7, 8


class StoreConfig(Value):
    """Tunables that do not change the on-disk format.

    ``compact_min_bytes`` and ``compact_garbage_ratio``: ``sync()`` compacts instead of
    appending when the journal would exceed both ``compact_min_bytes`` and
    ``compact_garbage_ratio`` times the size of a fresh snapshot. That keeps replay time
    proportional to the live set, not to the history. It also compacts when the next record
    does not fit in the region at all. ``read_only`` opens without ever writing.
    """

    __slots__ = ("compact_garbage_ratio", "compact_min_bytes", "read_only")
    compact_min_bytes: int
    compact_garbage_ratio: float
    read_only: bool

    def __init__(
        self,
        compact_min_bytes: int = 1 << 20,
        compact_garbage_ratio: float = 4.0,
        read_only: bool = False,
    ) -> None:
        if compact_min_bytes < 0 or compact_garbage_ratio < 1.0:
            raise StatefsError(errno.EINVAL, "compaction thresholds out of range")
        self._set(
            compact_min_bytes=compact_min_bytes,
            compact_garbage_ratio=compact_garbage_ratio,
            read_only=read_only,
        )


def layout_for(dev: BlockDevice, record_limit: int | None = None) -> tuple[int, int]:
    """(region_sectors, record_limit) for a device, or EINVAL if it is too small."""
    ss = dev.sector_size
    region_sectors = (dev.sector_count - SUPERBLOCK_SLOTS) // REGION_COUNT
    region_bytes = region_sectors * ss
    smallest = min_record_limit(ss)
    if record_limit is None:
        record_limit = min(DEFAULT_RECORD_LIMIT, region_bytes // MIN_RECORDS_PER_REGION)
        record_limit -= record_limit % ss
        record_limit = max(record_limit, smallest)
    if record_limit < smallest or record_limit % ss:
        raise StatefsError(errno.EINVAL, f"record limit must be a multiple of {ss} >= {smallest}")
    if region_bytes < MIN_RECORDS_PER_REGION * record_limit:
        need = SUPERBLOCK_SLOTS * ss + REGION_COUNT * MIN_RECORDS_PER_REGION * record_limit
        raise StatefsError(
            errno.EINVAL, f"device of {dev.size_bytes} bytes is too small (need {need} bytes)"
        )
    return region_sectors, record_limit


def _refuse_if_journal_present(dev: BlockDevice) -> None:
    """No superblock, but a journal region starts with a record: that is a store whose
    superblocks were destroyed, not a blank device (a format never writes a record), so it
    must not be formatted over. Raises CorruptionError; returns if the regions look blank."""
    try:
        region_sectors, _ = layout_for(dev)
    except StatefsError:
        return  # too small to have held a store
    for region in range(REGION_COUNT):
        lba = SUPERBLOCK_SLOTS + region * region_sectors
        if dev.read(lba, 1).startswith(RECORD_MAGIC):
            raise CorruptionError(
                f"no valid superblock, but journal region {region} (LBA {lba}) holds statefs "
                "records: refusing to treat the device as blank",
                lba=0,
            )


def _surely_fits_below(sb: Superblock) -> int:
    """Live-set size under which the ENOSPC check cannot fail, whatever the key count, so
    ``put`` can skip computing the snapshot bound (-1 when no such shortcut exists)."""
    room = sb.region_bytes * LIVE_FILL_NUM // LIVE_FILL_DEN
    per_record = sb.record_limit - RECORD_HEADER_BYTES - MAX_OP_BYTES
    overhead = RECORD_HEADER_BYTES + sb.sector_size
    if per_record <= 0:
        return -1
    # bound(x) <= x + (x / per_record + 1) * overhead <= room
    return int((room - overhead) * per_record / (per_record + overhead)) - 1


_pack_op = OP_HEADER.pack


class Store:
    """A journaled key/value store; open one with :meth:`open` or :meth:`format`."""

    def __init__(
        self,
        dev: BlockDevice,
        sb: Superblock,
        slot: int,
        result: ReplayResult,
        config: StoreConfig,
        *,
        peer_damaged: bool = False,
    ):
        self._dev = dev
        self._sb = sb
        self._slot = slot
        #: The superblock copy that is not current holds something that does not verify.
        self._peer_damaged = peer_damaged
        self._config = config
        self._live: dict[str, bytes] | None = result.live
        self._live_bytes = result.live_bytes
        self._offset = result.end_offset
        self._seq = result.next_seq
        self._pending = bytearray()
        self._pending_ops = 0
        self._failed: BaseException | None = None
        self._pending_limit = sb.record_limit - RECORD_HEADER_BYTES
        self._fits_below = _surely_fits_below(sb)
        self.replay = result
        #: "" or how the superblock was rebuilt from a damaged current copy (see superblock.py).
        self.rebuilt = ""
        #: Wall time of the open that built this store (superblocks + replay), for stats.
        self.replay_seconds = 0.0
        self.counters = {
            "syncs": 0,
            "records_written": 0,
            "bytes_written": 0,
            "flushes": 0,
            "compactions": 0,
            "seals": 0,
        }

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, dev: BlockDevice, config: StoreConfig | None = None) -> "Store":
        """Open the store on ``dev``: choose the superblock, replay the active region.

        Raises ``UnformattedError`` (ENODATA) on a blank device (never formatted),
        ``StatefsError`` with EMEDIUMTYPE on a device that holds something else (see
        :mod:`guest.statefs.blank`) and ``CorruptionError`` (EIO) on damage; none writes.
        """
        config = config or StoreConfig()
        started = time.perf_counter()
        try:
            return cls._open(dev, config, started)
        except StatefsError:
            raise
        except OSError as exc:
            raise StatefsError(errno.EIO, f"device read failed while opening: {exc}") from exc

    @classmethod
    def _open(cls, dev: BlockDevice, config: StoreConfig, started: float) -> "Store":
        try:
            selection = select_superblock(dev, read_slots(dev))
        except UnformattedError:
            _refuse_if_journal_present(dev)
            found = describe_non_blank(dev)
            if found:
                raise StatefsError(
                    errno.EMEDIUMTYPE,
                    f"device holds no statefs store and is not blank: {found}; refusing to "
                    "format over it (Store.format overwrites on purpose)",
                ) from None
            raise
        sb = selection.superblock
        if sb.sector_size != dev.sector_size:
            raise StatefsError(
                errno.EINVAL,
                f"store was formatted with {sb.sector_size}-byte sectors, "
                f"device has {dev.sector_size}",
            )
        if sb.sector_count > dev.sector_count:
            raise StatefsError(
                errno.EIO,
                f"device has {dev.sector_count} sectors, store needs {sb.sector_count}",
            )
        try:
            result = replay(dev, sb)
        except CorruptionError as exc:
            if not selection.rebuilt:
                raise
            raise CorruptionError(f"{selection.rebuilt}, but: {exc.strerror}", lba=exc.lba) from exc
        store = cls(dev, sb, selection.slot, result, config, peer_damaged=selection.peer_damaged)
        store.rebuilt = selection.rebuilt
        store.replay_seconds = time.perf_counter() - started
        if result.torn_tail and not config.read_only:
            store._seal()
        return store

    @classmethod
    def format(
        cls,
        dev: BlockDevice,
        config: StoreConfig | None = None,
        *,
        volume_id: int | None = None,
        epoch: int | None = None,
        record_limit: int | None = None,
    ) -> "Store":
        """Write a new, empty store to ``dev`` and return it open.

        The new superblock gets a generation above any valid one on the device and goes to
        both slots, so it wins over an earlier store the moment its first write completes (and
        loses, leaving the old store whole, if that write is torn). The random volume id salts
        every record CRC, so records of any earlier format are never replayed.
        """
        config = config or StoreConfig()
        if config.read_only:
            raise StatefsError(errno.EROFS, "cannot format a read-only store")
        region_sectors, record_limit = layout_for(dev, record_limit)
        try:
            slots = read_slots(dev)
        except OSError as exc:
            raise StatefsError(errno.EIO, f"device read failed while formatting: {exc}") from exc
        newest = max(
            (state for state in slots if state.valid),
            key=lambda state: state.superblock.generation,
            default=None,
        )
        generation = newest.superblock.generation + 1 if newest else 1
        first = 1 - newest.slot if newest else 1
        if volume_id is None:
            volume_id = int.from_bytes(os.urandom(8), "little")
        if epoch is None:
            epoch = int.from_bytes(os.urandom(4), "little")
        sb = Superblock(
            sector_size=dev.sector_size,
            sector_count=dev.sector_count,
            generation=generation,
            epoch=epoch,
            active_region=0,
            region_sectors=region_sectors,
            volume_id=volume_id,
            record_limit=record_limit,
        )
        # Both copies, the one not holding the newest old superblock first, each flushed: a cut
        # during the first write leaves the old store (or, on a blank device, a torn copy next
        # to an empty one, which reads as unformatted); after it, the new store wins.
        encoded = sb.encode()
        try:
            for slot in (first, 1 - first):
                dev.write(slot, encoded)
                dev.flush()
        except OSError as exc:
            raise StatefsError(errno.EIO, f"device write failed while formatting: {exc}") from exc
        return cls.open(dev, config)

    @classmethod
    def open_or_format(
        cls, dev: BlockDevice, config: StoreConfig | None = None, *, record_limit: int | None = None
    ) -> tuple["Store", bool]:
        """Open the store, formatting only a blank device; returns (store, formatted).

        A damaged store, or a device holding anything else (a partition table, a file system:
        EMEDIUMTYPE), is never formatted over: that raises like :meth:`open`, writing nothing.
        ``record_limit`` applies to a format only (an existing store keeps its own).
        """
        try:
            return cls.open(dev, config), False
        except UnformattedError:
            return cls.format(dev, config, record_limit=record_limit), True

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: str | bytes) -> bytes:
        """The value of ``key``; ENOENT if absent. Sees unsynced writes."""
        live = self._live
        if live is None:
            raise StatefsError(errno.EBADF, "store is closed")
        value = live.get(key) if isinstance(key, str) else None
        if value is not None:
            return value
        value = live.get(normalize_key(key))
        if value is None:
            raise StatefsError(errno.ENOENT, f"no such key: {normalize_key(key)}")
        return value

    def list(self, prefix: str | bytes = "/state") -> list[str]:
        """Sorted keys equal to ``prefix`` or below it (path prefix, not string prefix)."""
        live = self._require_open()
        base = normalize_prefix(prefix)
        below = base + "/"
        return sorted(key for key in live if key == base or key.startswith(below))

    def __contains__(self, key: str | bytes) -> bool:
        live = self._require_open()
        return normalize_key(key) in live

    def __len__(self) -> int:
        return len(self._require_open())

    # -- writes ------------------------------------------------------------------------------

    def put(self, key: str | bytes, value: BytesLike) -> None:
        """Set ``key`` to ``value`` (durable at the next ``sync()``)."""
        live = self._live
        if live is None or self._failed is not None or self._config.read_only:
            live = self._require_writable()  # raises the right error
        # A key already live, or matching the normal form, needs no normalization.
        if type(key) is not str or (key not in live and not is_normal_key(key)):
            key = normalize_key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_BYTES:
            value = self._check_value(value)
        encoded = key.encode("utf-8")
        key_len = len(encoded)
        value_len = len(value)
        op_size = OP_HEADER_BYTES + key_len + value_len
        pending = self._pending
        if len(pending) + op_size > self._pending_limit:
            self._check_pending_room(op_size)  # raises ENOBUFS
        old = live.get(key)
        if old is None:
            live_bytes = self._live_bytes + op_size
            grows = True
        else:
            live_bytes = self._live_bytes + value_len - len(old)
            grows = value_len > len(old)
        if grows and live_bytes > self._fits_below:
            self._check_live_room(live_bytes, len(live) + (old is None))
        pending += _pack_op(OP_PUT, 0, key_len, value_len)
        pending += encoded
        pending += value
        self._pending_ops += 1
        live[key] = value
        self._live_bytes = live_bytes

    def delete(self, key: str | bytes) -> None:
        """Remove ``key``; ENOENT if absent (durable at the next ``sync()``)."""
        live = self._require_writable()
        key = normalize_key(key)
        old = live.get(key)
        if old is None:
            raise StatefsError(errno.ENOENT, f"no such key: {key}")
        encoded = key.encode("utf-8")
        self._check_pending_room(OP_HEADER_BYTES + len(encoded))
        self._pending += OP_HEADER.pack(OP_DELETE, 0, len(encoded), 0)
        self._pending += encoded
        self._pending_ops += 1
        del live[key]
        self._live_bytes -= OP_HEADER_BYTES + len(encoded) + len(old)

    def write_batch(self, operations: Iterable[tuple[str | bytes, BytesLike | None]]) -> None:
        """Apply puts (``(key, value)``) and deletes (``(key, None)``) all or nothing.

        Every operation is checked (key, value size, ENOENT for deletes, commit group and
        store capacity) before any is applied, so a failing batch changes nothing. Like
        :meth:`put`, the batch is durable at the next ``sync()``, in one commit group.
        """
        live = self._require_writable()
        overlay: dict[str, bytes | None] = {}
        prepared: list[tuple[str, bytes, bytes | None]] = []
        pending_bytes = 0
        live_bytes = self._live_bytes
        live_keys = len(live)
        for raw_key, raw_value in operations:
            key = normalize_key(raw_key)
            encoded = key.encode("utf-8")
            current = overlay[key] if key in overlay else live.get(key)
            if raw_value is None:
                if current is None:
                    raise StatefsError(errno.ENOENT, f"no such key: {key}")
                pending_bytes += OP_HEADER_BYTES + len(encoded)
                live_bytes -= OP_HEADER_BYTES + len(encoded) + len(current)
                live_keys -= 1
                value = None
            else:
                value = self._check_value(raw_value)
                pending_bytes += OP_HEADER_BYTES + len(encoded) + len(value)
                if current is None:
                    live_keys += 1
                    live_bytes += OP_HEADER_BYTES + len(encoded) + len(value)
                else:
                    live_bytes += len(value) - len(current)
            overlay[key] = value
            prepared.append((key, encoded, value))
        self._check_pending_room(pending_bytes)
        if live_bytes > self._live_bytes:
            self._check_live_room(live_bytes, live_keys)
        for key, encoded, value in prepared:
            if value is None:
                self._pending += OP_HEADER.pack(OP_DELETE, 0, len(encoded), 0)
                self._pending += encoded
                del live[key]
            else:
                self._pending += OP_HEADER.pack(OP_PUT, 0, len(encoded), len(value))
                self._pending += encoded
                self._pending += value
                live[key] = value
            self._pending_ops += 1
        self._live_bytes = live_bytes

    def sync(self) -> None:
        """Commit every change made so far, durably and as one unit."""
        self._require_writable()
        if not self._pending_ops:
            return
        record = self._record(KIND_TXN, self._pending_ops, self._pending)
        if self._should_compact(len(record)):
            self._compact()
        else:
            self._append(record)
        self._pending = bytearray()
        self._pending_ops = 0
        self.counters["syncs"] += 1

    def compact(self) -> None:
        """Rewrite the live set (pending changes included, which this commits) now."""
        self._require_writable()
        self._compact()
        self._pending = bytearray()
        self._pending_ops = 0

    def close(self, *, sync: bool = True) -> None:
        """Close the device, first syncing pending changes unless ``sync=False`` (which drops
        them, like a crash) or the store failed.

        A clean close also checkpoints: when the journal holds more than
        ``CLOSE_COMPACT_RATIO`` times what a fresh snapshot would (and at least
        ``CLOSE_COMPACT_MIN_BYTES``), it compacts, so the next open replays the live set once
        instead of the whole history. Only a crash leaves a long journal to replay.
        """
        if self._live is None:
            return
        try:
            writable = sync and self._failed is None and not self._config.read_only
            if writable and self._pending_ops:
                self.sync()
            if writable and self._offset > CLOSE_COMPACT_MIN_BYTES:
                sb = self._sb
                snapshot = snapshot_bytes_bound(
                    self._live_bytes, len(self._live), sb.sector_size, sb.record_limit
                )
                if self._offset > CLOSE_COMPACT_RATIO * snapshot:
                    self._compact()
        finally:
            self._live = None
            self._dev.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- inspection --------------------------------------------------------------------------

    @property
    def superblock(self) -> Superblock:
        return self._sb

    @property
    def pending_ops(self) -> int:
        return self._pending_ops

    def stats(self) -> dict[str, int | float | str]:
        live = self._require_open()
        return {
            "live_keys": len(live),
            "live_bytes": self._live_bytes,
            "pending_ops": self._pending_ops,
            "journal_bytes": self._offset,
            "region_bytes": self._sb.region_bytes,
            "record_limit": self._sb.record_limit,
            "sector_size": self._sb.sector_size,
            "generation": self._sb.generation,
            "active_region": self._sb.active_region,
            "next_seq": self._seq,
            "replay_records": self.replay.records,
            "replay_ms": round(self.replay_seconds * 1000, 3),
            "failed": "" if self._failed is None else str(self._failed),
            "crc": CRC_BACKEND,
            **self.counters,
        }

    def fsck(self):
        """Re-read the device and check it against this store (see :mod:`guest.statefs.fsck`)."""
        from guest.statefs.fsck import check_device

        live = self._require_open()
        committed = None if self._pending_ops else live
        return check_device(self._dev, expected=committed)

    # -- internals ---------------------------------------------------------------------------

    def _require_open(self) -> dict[str, bytes]:
        if self._live is None:
            raise StatefsError(errno.EBADF, "store is closed")
        return self._live

    def _require_writable(self) -> dict[str, bytes]:
        live = self._require_open()
        if self._config.read_only:
            raise StatefsError(errno.EROFS, "store is open read-only")
        if self._failed is not None:
            raise StatefsError(
                errno.EIO, f"store failed earlier ({self._failed}); reopen to recover"
            )
        return live

    @staticmethod
    def _check_value(value: object) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise StatefsError(errno.EINVAL, f"value must be bytes, not {type(value).__name__}")
        value = bytes(value)
        if len(value) > MAX_VALUE_BYTES:
            raise StatefsError(
                errno.EFBIG, f"value of {len(value)} bytes exceeds {MAX_VALUE_BYTES} bytes"
            )
        return value

    def _check_pending_room(self, op_size: int) -> None:
        limit = self._sb.record_limit - RECORD_HEADER_BYTES
        if len(self._pending) + op_size > limit:
            raise StatefsError(
                errno.ENOBUFS,
                f"uncommitted changes would exceed one commit group ({limit} bytes); sync first",
            )

    def _check_live_room(self, live_bytes: int, live_keys: int) -> None:
        sb = self._sb
        need = snapshot_bytes_bound(live_bytes, live_keys, sb.sector_size, sb.record_limit)
        room = sb.region_bytes * LIVE_FILL_NUM // LIVE_FILL_DEN
        if need > room:
            raise StatefsError(
                errno.ENOSPC, f"live set would need {need} bytes; the store holds {room}"
            )

    def _record(self, kind: int, op_count: int, payload: bytes | bytearray) -> bytes:
        return encode_record(
            kind=kind,
            epoch=self._sb.epoch,
            seq=self._seq,
            op_count=op_count,
            payload=payload,
            salt=self._sb.salt,
            sector_size=self._sb.sector_size,
        )

    def _should_compact(self, record_bytes: int) -> bool:
        end = self._offset + record_bytes
        if end > self._sb.region_bytes:
            return True
        config = self._config
        if end <= config.compact_min_bytes:
            return False
        snapshot = snapshot_bytes_bound(
            self._live_bytes, len(self._live), self._sb.sector_size, self._sb.record_limit
        )
        return end > config.compact_garbage_ratio * max(snapshot, self._sb.sector_size)

    def _io(self, action, *args) -> None:
        try:
            action(*args)
        except OSError as exc:
            self._failed = exc
            raise StatefsError(errno.EIO, f"device I/O failed: {exc}") from exc

    def _append(self, record: bytes) -> None:
        lba = self._sb.region_start(self._sb.active_region) + self._offset // self._sb.sector_size
        self._io(self._dev.write, lba, record)
        self._io(self._dev.flush)
        self._offset += len(record)
        self._seq += 1
        self.counters["records_written"] += 1
        self.counters["bytes_written"] += len(record)
        self.counters["flushes"] += 1

    def _seal(self) -> None:
        """Zero the header sector of a torn group before anything else is written.

        The debris carries this epoch and the expected sequence number. Left in place, a later
        torn write over that sector could supply exactly the bytes it misses (every record
        starts with the same magic, and a retry may repeat the same payload) and make the
        dropped group verify: a resurrection. A zeroed sector can never become that header
        again; a torn zeroing leaves debris the next open finds and zeroes again.
        """
        sb = self._sb
        lba = sb.region_start(sb.active_region) + self._offset // sb.sector_size
        self._io(self._dev.write, lba, bytes(sb.sector_size))
        self._io(self._dev.flush)
        self.counters["seals"] += 1
        self.counters["bytes_written"] += sb.sector_size
        self.counters["flushes"] += 1

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
                self._live, epoch=epoch, salt=sb.salt, sector_size=sb.sector_size,
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
