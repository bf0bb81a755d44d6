"""The journal writer: commit groups appended to the active region, and the torn-tail seal.

A part of :class:`~guest.statefs.store.Store` (a mixin), kept apart because it is the only
code that writes records into the active region: what it writes, where, and in what order
against the flushes is what the format's guarantees rest on.
"""

import errno
from collections.abc import Callable

from guest.statefs.blockdev import BlockDevice
from guest.statefs.errors import StatefsError
from guest.statefs.layout import Superblock, encode_record


class JournalWriter:
    """Appends records at the write head; after an I/O error, marks the store failed."""

    _dev: BlockDevice
    _sb: Superblock
    _offset: int
    _seq: int
    _failed: BaseException | None
    counters: dict[str, int]

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

    def _io(self, action: Callable[..., object], *args: object) -> None:
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
