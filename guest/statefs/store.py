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
import time
from collections.abc import Iterable

from guest.statefs.blockdev import BlockDevice
from guest.statefs.compaction import (
    CompactionCommit,
    live_room,
    snapshot_bytes_bound,
    surely_fits_below,
)
from guest.statefs.config import StoreConfig
from guest.statefs.crc import BACKEND as CRC_BACKEND
from guest.statefs.errors import CorruptionError, StatefsError, UnformattedError
from guest.statefs.layout import (
    JOURNAL_DELETE,
    JOURNAL_PUT,
    KIND_TXN,
    MAX_VALUE_BYTES,
    OP_HEADER_BYTES,
    RECORD_HEADER_BYTES,
    Superblock,
    append_op,
)
from guest.statefs.paths import is_normal_key, normalize_key, normalize_prefix
from guest.statefs.replay import ReplayResult, replay
from guest.statefs.superblock import read_slots
from guest.statefs.superblock import select as select_superblock
from guest.statefs.volume import check_fits, refuse_unless_blank, write_new_volume

__all__ = ["Store", "StoreConfig"]

BytesLike = bytes | bytearray | memoryview

#: A clean close compacts a journal longer than this many fresh snapshots...
CLOSE_COMPACT_RATIO = 2
#: ...and longer than this (a short journal replays fast anyway).
CLOSE_COMPACT_MIN_BYTES = 256 * 1024


class Store(CompactionCommit):
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
        self._fits_below = surely_fits_below(sb)
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
            refuse_unless_blank(dev)
            raise
        sb = selection.superblock
        check_fits(sb, dev)
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
        """Write a new, empty store to ``dev`` and return it open (see
        :func:`guest.statefs.volume.write_new_volume`: an earlier store on the device stays whole
        until the first new superblock is written, and its records are never replayed)."""
        config = config or StoreConfig()
        if config.read_only:
            raise StatefsError(errno.EROFS, "cannot format a read-only store")
        write_new_volume(dev, volume_id=volume_id, epoch=epoch, record_limit=record_limit)
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
        append_op(pending, JOURNAL_PUT, encoded, value)
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
        append_op(self._pending, JOURNAL_DELETE, encoded)
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
                append_op(self._pending, JOURNAL_DELETE, encoded)
                del live[key]
            else:
                append_op(self._pending, JOURNAL_PUT, encoded, value)
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
        room = live_room(sb)
        if need > room:
            raise StatefsError(
                errno.ENOSPC, f"live set would need {need} bytes; the store holds {room}"
            )
