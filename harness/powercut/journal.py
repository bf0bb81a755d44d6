"""The cache's two files: the pending-write journal and the undo record.

Both live in the cache's state directory, next to nothing else. All integers little-endian;
CRCs are zlib's CRC-32 (standard library only: this module runs inside nbdkit's Python).

``pending.journal``: every write the guest made since the last completed flush, in order::

    header  magic "SQPJ" | version u16 | reserved u16 | generation u64 | crc32(first 16) u32
    record  offset u64 | length u32 | crc32(offset, length, data) u32 | data[length]
    ...

A record is appended with one ``write`` before the NBD write is answered; a SIGKILL inside that
``write`` leaves a short final record: a *torn tail*, a write the disk never accepted, dropped
when reading. A complete record with a bad CRC is damage, reported. A flush commits by
replacing the journal (write ``pending.journal.tmp``, rename) with an empty one of the next
``generation``.

``undo.record``: what a flush is about to overwrite, saved before it touches the backing file::

    header  magic "SQPU" | version u16 | reserved u16 | generation u64 | count u32
    extent  offset u64 | length u32 | old data[length]      (count times)
    trailer crc32(everything before) u32

It is written to ``undo.record.tmp`` and renamed into place, so it exists only whole. Its
``generation`` is the journal's at the time of the flush: an undo record with the same
generation as the journal belongs to a flush that did not commit (roll it back); one generation
behind belongs to a flush that committed but did not yet delete it (discard it).

None of these files is ever fsynced: the power cut is a SIGKILL of processes on a host that
keeps running, and the host's page cache keeps every completed write and rename, in order (a
host crash in the middle of a campaign voids it anyway). Only the backing file is fdatasynced,
by each flush: that is the flush's promise to the guest. Skipping the five metadata syncs per
flush lets the guest write about three times faster, so a campaign reaches compaction sooner.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.powercut.errors import CacheFormatError

JOURNAL_NAME = "pending.journal"
UNDO_NAME = "undo.record"
TMP_SUFFIX = ".tmp"

JOURNAL_MAGIC = b"SQPJ"
UNDO_MAGIC = b"SQPU"
FORMAT_VERSION = 1

_HEADER = struct.Struct("<4sHHQ")  # magic, version, reserved, generation
_CRC = struct.Struct("<I")
_RECORD = struct.Struct("<QII")  # offset, length, crc32
_UNDO_COUNT = struct.Struct("<I")
_EXTENT = struct.Struct("<QI")  # offset, length

JOURNAL_HEADER_SIZE = _HEADER.size + _CRC.size
RECORD_HEADER_SIZE = _RECORD.size

#: A single NBD request is at most 32 MiB (nbdkit's limit); a longer length field is damage.
MAX_EXTENT_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Extent:
    """``data`` at byte ``offset`` of the disk: a pending write, or old bytes in an undo."""

    offset: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True)
class JournalContents:
    """A journal as read back: its generation, the complete writes, and a torn tail's size."""

    generation: int
    writes: tuple[Extent, ...]
    torn_tail_bytes: int = 0


@dataclass(frozen=True)
class UndoRecord:
    generation: int
    extents: tuple[Extent, ...]


# -- journal --------------------------------------------------------------------------------
def encode_journal_header(generation: int) -> bytes:
    head = _HEADER.pack(JOURNAL_MAGIC, FORMAT_VERSION, 0, generation)
    return head + _CRC.pack(zlib.crc32(head))


def _record_crc(offset: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(struct.pack("<QI", offset, len(data))))


def encode_record(extent: Extent) -> bytes:
    crc = _record_crc(extent.offset, extent.data)
    return _RECORD.pack(extent.offset, len(extent.data), crc) + extent.data


def decode_journal(data: bytes, *, source: str = "journal") -> JournalContents:
    """Parse a whole journal; a short final record is a torn tail, anything else wrong is
    :class:`CacheFormatError` naming the offset."""
    if len(data) < JOURNAL_HEADER_SIZE:
        raise CacheFormatError(f"{source}: {len(data)} bytes, shorter than its header")
    magic, version, _, generation = _HEADER.unpack_from(data)
    (crc,) = _CRC.unpack_from(data, _HEADER.size)
    if magic != JOURNAL_MAGIC or zlib.crc32(data[: _HEADER.size]) != crc:
        raise CacheFormatError(f"{source}: bad header (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise CacheFormatError(f"{source}: version {version}, expected {FORMAT_VERSION}")
    writes: list[Extent] = []
    pos = JOURNAL_HEADER_SIZE
    while pos < len(data):
        if len(data) - pos < RECORD_HEADER_SIZE:
            return JournalContents(generation, tuple(writes), len(data) - pos)
        offset, length, crc = _RECORD.unpack_from(data, pos)
        if length > MAX_EXTENT_BYTES:
            raise CacheFormatError(f"{source}: record at {pos} claims {length} bytes")
        start = pos + RECORD_HEADER_SIZE
        if start + length > len(data):
            return JournalContents(generation, tuple(writes), len(data) - pos)
        payload = data[start : start + length]
        if _record_crc(offset, payload) != crc:
            raise CacheFormatError(f"{source}: record at {pos} (write {len(writes)}) CRC mismatch")
        writes.append(Extent(offset, payload))
        pos = start + length
    return JournalContents(generation, tuple(writes), 0)


def read_journal(path: Path) -> JournalContents:
    return decode_journal(path.read_bytes(), source=str(path))


# -- undo record ----------------------------------------------------------------------------
def encode_undo(generation: int, extents: Sequence[Extent]) -> bytes:
    parts = [_HEADER.pack(UNDO_MAGIC, FORMAT_VERSION, 0, generation)]
    parts.append(_UNDO_COUNT.pack(len(extents)))
    for extent in extents:
        parts.append(_EXTENT.pack(extent.offset, len(extent.data)))
        parts.append(extent.data)
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def decode_undo(data: bytes, *, source: str = "undo record") -> UndoRecord:
    """Parse an undo record; it is renamed into place whole, so any damage is an error."""
    fixed = _HEADER.size + _UNDO_COUNT.size
    if len(data) < fixed + _CRC.size:
        raise CacheFormatError(f"{source}: {len(data)} bytes, too short")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    body = data[: -_CRC.size]
    if zlib.crc32(body) != crc:
        raise CacheFormatError(f"{source}: CRC mismatch over {len(body)} bytes")
    magic, version, _, generation = _HEADER.unpack_from(body)
    if magic != UNDO_MAGIC or version != FORMAT_VERSION:
        raise CacheFormatError(f"{source}: bad header (magic {magic!r}, version {version})")
    (count,) = _UNDO_COUNT.unpack_from(body, _HEADER.size)
    extents: list[Extent] = []
    pos = fixed
    for index in range(count):
        if len(body) - pos < _EXTENT.size:
            raise CacheFormatError(f"{source}: extent {index} of {count} is cut short")
        offset, length = _EXTENT.unpack_from(body, pos)
        pos += _EXTENT.size
        if pos + length > len(body):
            raise CacheFormatError(f"{source}: extent {index} of {count} is cut short")
        extents.append(Extent(offset, body[pos : pos + length]))
        pos += length
    if pos != len(body):
        raise CacheFormatError(f"{source}: {len(body) - pos} stray bytes after {count} extents")
    return UndoRecord(generation, tuple(extents))


def read_undo(path: Path) -> UndoRecord:
    return decode_undo(path.read_bytes(), source=str(path))


# -- files ----------------------------------------------------------------------------------
def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """``write``/``pwrite`` until every byte is written (both may write less than asked)."""
    view = memoryview(data)
    while view:
        if offset is None:
            done = os.write(fd, view)
        else:
            done = os.pwrite(fd, view, offset)
            offset += done
        view = view[done:]


def replace_whole(path: Path, data: bytes) -> None:
    """Write ``path.tmp``, then rename it over ``path``: whoever looks at ``path`` sees the old
    contents whole or the new contents whole, even if the writer is SIGKILLed in between.

    No fsync: what this protects against is the server being killed on a host that keeps
    running, and the host's page cache keeps every completed write and rename in order.
    """
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def journal_has_writes(state_dir: Path) -> bool:
    """True while the cache holds writes (the journal is longer than its header): a cheap
    ``stat`` the campaign polls to cut while the disk is dirty."""
    try:
        return (state_dir / JOURNAL_NAME).stat().st_size > JOURNAL_HEADER_SIZE
    except FileNotFoundError:
        return False


def flush_in_progress(state_dir: Path) -> bool:
    """True while a flush is writing back (its undo record exists)."""
    return (state_dir / UNDO_NAME).exists()


def leftovers(state_dir: Path) -> list[Path]:
    """The files an unresolved cut leaves in ``state_dir`` (empty once resolved)."""
    names = (JOURNAL_NAME, UNDO_NAME, JOURNAL_NAME + TMP_SUFFIX, UNDO_NAME + TMP_SUFFIX)
    return [state_dir / name for name in names if (state_dir / name).exists()]


def remove_files(paths: Iterable[Path]) -> None:
    """Unlink ``paths``; missing ones are fine."""
    for path in paths:
        path.unlink(missing_ok=True)
