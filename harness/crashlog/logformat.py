"""Reader of the Linux dm-log-writes format, which QEMU's ``blklogwrites`` driver writes.

The log is a sequence of sectors of the size its super entry names (``log-sector-size``):

::

    sector 0        super:  magic u64 | version u64 | nr_entries u64 | sectorsize u32 | zeros
    sector 1 ...    entry:  sector u64 | nr_sectors u64 | flags u64 | data_len u64 | zeros
                    then nr_sectors sectors of written data (none for a flush or a discard;
                    a mark's text is inline, right after the entry's 32 bytes)
                    entry ... (in the order the requests *completed*)

All integers are little-endian. ``sector`` and ``nr_sectors`` count log sectors (the device's
sector when, as here, ``log-sector-size`` equals it). Flags: FLUSH (a flush completed: every
write logged before it is on stable storage), FUA (this write bypassed the cache), DISCARD
(the range was discarded; no data follows), MARK (a named point set by a user, no device
change), METADATA (the kernel's hint that a write is file-system metadata).

Why entries beyond ``nr_entries`` are read too: the writer rewrites the super entry (with the
count so far) only at a flush, so the entries after the last flush are in the file but not
counted. A reader that stopped at the count would lose the writes a power cut can lose or
tear, exactly the ones a crash-state generator needs. They are read while they parse; the
first one that does not (zeros, a torn entry, the file's end) ends the log, and the reader
says how many it found that way (``uncounted``). Inside the counted entries, anything that
does not parse is an error (:class:`LogFormatError`): a log that lies about itself is not a
history to judge a store by.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from harness.errors import HarnessError

LOG_MAGIC = 0x6A736677736872
LOG_VERSION = 1

FLAG_FLUSH = 1 << 0
FLAG_FUA = 1 << 1
FLAG_DISCARD = 1 << 2
FLAG_MARK = 1 << 3
FLAG_METADATA = 1 << 4
FLAG_NAMES = {
    FLAG_FLUSH: "FLUSH",
    FLAG_FUA: "FUA",
    FLAG_DISCARD: "DISCARD",
    FLAG_MARK: "MARK",
    FLAG_METADATA: "METADATA",
}
KNOWN_FLAGS = FLAG_FLUSH | FLAG_FUA | FLAG_DISCARD | FLAG_MARK | FLAG_METADATA

SUPER = struct.Struct("<QQQI")
ENTRY = struct.Struct("<QQQQ")
#: Sector sizes the reader accepts (a power of two; dm-log-writes and QEMU use 512 or 4096).
MIN_SECTOR_SIZE = 512
MAX_SECTOR_SIZE = 1 << 16
#: The longest mark text accepted (the kernel limits marks to one page).
MAX_MARK_BYTES = 4096


class LogFormatError(HarnessError):
    """The file is not a well-formed dm-log-writes log; the message names the entry and the
    byte offset where it went wrong."""


@dataclass(frozen=True)
class LogEntry:
    """One request, as logged. ``data`` is the written bytes (``nr_sectors`` sectors) for a
    write, empty for a flush or a discard, the mark's text for a mark."""

    index: int
    offset: int  # byte offset of the entry in the log file
    sector: int
    nr_sectors: int
    flags: int
    data: bytes = b""

    @property
    def is_flush(self) -> bool:
        return bool(self.flags & FLAG_FLUSH)

    @property
    def is_fua(self) -> bool:
        return bool(self.flags & FLAG_FUA)

    @property
    def is_discard(self) -> bool:
        return bool(self.flags & FLAG_DISCARD)

    @property
    def is_mark(self) -> bool:
        return bool(self.flags & FLAG_MARK)

    @property
    def is_write(self) -> bool:
        """A request that changed sectors with data (FUA or not)."""
        return self.nr_sectors > 0 and not (self.flags & (FLAG_DISCARD | FLAG_MARK))

    @property
    def mark(self) -> str:
        return self.data.decode("utf-8", "replace") if self.is_mark else ""

    def describe(self) -> str:
        names = [name for bit, name in FLAG_NAMES.items() if self.flags & bit] or ["WRITE"]
        what = "+".join(names)
        if self.is_mark:
            return f"#{self.index} MARK {self.mark!r}"
        if self.nr_sectors:
            return f"#{self.index} {what} sector {self.sector} x{self.nr_sectors}"
        return f"#{self.index} {what}"


@dataclass(frozen=True)
class BlockLog:
    """A parsed log: its sector size, the entries in order, and how many of them came after
    the super entry's count (written after the last flush)."""

    sector_size: int
    counted: int
    entries: tuple[LogEntry, ...]

    @property
    def uncounted(self) -> int:
        return len(self.entries) - self.counted

    def counts(self) -> dict[str, int]:
        """Entries by kind (writes, sectors written, flushes, FUA, discards, marks)."""
        entries = self.entries
        return {
            "entries": len(entries),
            "writes": sum(entry.is_write for entry in entries),
            "sectors": sum(entry.nr_sectors for entry in entries if entry.is_write),
            "flushes": sum(entry.is_flush for entry in entries),
            "fua": sum(entry.is_fua for entry in entries),
            "discards": sum(entry.is_discard for entry in entries),
            "marks": sum(entry.is_mark for entry in entries),
        }


def read_super(data: bytes) -> tuple[int, int]:
    """(sector_size, nr_entries) of the log's super entry; LogFormatError if it is not one."""
    if len(data) < SUPER.size:
        raise LogFormatError(f"log of {len(data)} bytes is too short for its super entry")
    magic, version, nr_entries, sector_size = SUPER.unpack_from(data, 0)
    if magic != LOG_MAGIC:
        raise LogFormatError(f"not a dm-log-writes log: magic {magic:#x}, want {LOG_MAGIC:#x}")
    if version != LOG_VERSION:
        raise LogFormatError(f"log version {version} is not supported (only {LOG_VERSION})")
    if not MIN_SECTOR_SIZE <= sector_size <= MAX_SECTOR_SIZE or sector_size & (sector_size - 1):
        raise LogFormatError(f"log sector size {sector_size} is not a power of two in range")
    if len(data) < sector_size:
        raise LogFormatError(f"log of {len(data)} bytes ends inside its {sector_size}-byte super")
    return sector_size, nr_entries


def _entry_at(data: bytes, index: int, offset: int, ss: int) -> tuple[LogEntry, int]:
    """Parse the entry at ``offset``; returns it and the offset of the next. LogFormatError
    (naming the entry) if it is cut short or malformed."""
    where = f"entry {index} at byte {offset}"
    if offset + ss > len(data):
        raise LogFormatError(f"{where}: the log ends inside the entry")
    sector, nr_sectors, flags, data_len = ENTRY.unpack_from(data, offset)
    if flags & ~KNOWN_FLAGS:
        raise LogFormatError(f"{where}: unknown flags {flags:#x}")
    if flags & FLAG_MARK:
        if nr_sectors or not 0 < data_len <= MAX_MARK_BYTES:
            raise LogFormatError(f"{where}: a mark with {nr_sectors} sectors, {data_len} bytes")
        length = -(-(ENTRY.size + data_len) // ss) * ss
        if offset + length > len(data):
            raise LogFormatError(f"{where}: the log ends inside the mark's text")
        text = data[offset + ENTRY.size : offset + ENTRY.size + data_len]
        return LogEntry(index, offset, sector, 0, flags, text.rstrip(b"\0")), offset + length
    if data_len:
        raise LogFormatError(f"{where}: data_len {data_len} outside a mark")
    if not flags and not nr_sectors:
        raise LogFormatError(f"{where}: a write of no sectors")
    start = offset + ss
    end = start if flags & FLAG_DISCARD else start + nr_sectors * ss
    if end > len(data):
        raise LogFormatError(f"{where}: the log ends inside its {nr_sectors} sectors of data")
    return LogEntry(index, offset, sector, nr_sectors, flags, data[start:end]), end


def parse_log(data: bytes, *, device_sectors: int | None = None) -> BlockLog:
    """Parse a whole log (module docstring). ``device_sectors``: if given, a write or discard
    beyond the device's end is an error too."""
    ss, counted = read_super(data)
    entries: list[LogEntry] = []
    offset = ss
    limit = len(data) // ss
    if counted > limit:
        raise LogFormatError(f"super entry counts {counted} entries, the log holds {limit} sectors")
    for index in range(counted):
        entry, offset = _entry_at(data, index, offset, ss)
        entries.append(_within(entry, device_sectors))
    while offset + ss <= len(data):
        if not any(data[offset : offset + ENTRY.size]):
            break
        try:
            entry, offset = _entry_at(data, len(entries), offset, ss)
        except LogFormatError:
            break
        entries.append(_within(entry, device_sectors))
    return BlockLog(ss, counted, tuple(entries))


def _within(entry: LogEntry, device_sectors: int | None) -> LogEntry:
    if device_sectors is not None and entry.sector + entry.nr_sectors > device_sectors:
        raise LogFormatError(
            f"{entry.describe()} at byte {entry.offset}: beyond the device's "
            f"{device_sectors} sectors"
        )
    return entry


def read_log(path, *, device_sectors: int | None = None) -> BlockLog:
    """:func:`parse_log` of a file, naming the file in any error."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return parse_log(data, device_sectors=device_sectors)
    except LogFormatError as exc:
        raise LogFormatError(f"{path}: {exc.message}") from None
