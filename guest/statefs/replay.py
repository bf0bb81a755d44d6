"""Journal replay: rebuild the live key/value set from the active region.

Replay is a pure function of the device's bytes: the same bytes always give the same state or
the same error. It reads records from the start of the region, each at a sector boundary, and
stops at the first position that does not hold the next record (bad magic, a length out of
bounds, a CRC mismatch, another epoch, another sequence number). What it found there is the
``tail_reason``.

Stopping is only safe if that position really is the end of what was committed. A torn write
can only damage the last record (the one whose ``sync()`` never returned), and the next record
is written only after that one's flush completed, so: if a *later* record (sequence number
greater than the expected one) verifies anywhere in the window where it could start, the
stopping point is damage in the middle of the journal, and replay raises
:class:`CorruptionError` instead of silently dropping committed groups.

Bounds (all from the superblock, none from the data): at most ``region_bytes`` are replayed; one
record is at most ``record_limit`` bytes; the damage scan reads at most ``record_limit`` plus one
sector past the end and verifies at most ``SCAN_CRC_BUDGET_RECORDS`` records' worth of bytes.
"""

from guest.statefs.blockdev import BlockDevice
from guest.statefs.crc import crc32c
from guest.statefs.errors import CorruptionError
from guest.statefs.layout import (
    CRC_COVERS_FROM,
    FLAG_SNAPSHOT,
    FLAG_SNAPSHOT_END,
    JOURNAL_DELETE,
    JOURNAL_PUT,
    KIND_TXN,
    OP_HEADER,
    OP_HEADER_BYTES,
    RECORD_HEADER,
    RECORD_HEADER_BYTES,
    RECORD_MAGIC,
    RECORD_PLACE_END,
    RECORD_PLACE_OFFSET,
    RecordHeader,
    Superblock,
    record_place,
    round_up,
    unpack_record_header,
)
from guest.statefs.paths import MAX_KEY_BYTES, NORMAL_ASCII_KEY, is_normal_key

_unpack_header = RECORD_HEADER.unpack
#: Where ``payload_bytes`` is in an unpacked header (by name, from the field table).
_PAYLOAD_BYTES = RecordHeader._fields.index("payload_bytes")

#: Device bytes read per request while replaying.
READ_CHUNK_BYTES = 1 << 20
#: The damage scan verifies at most this many largest-records' worth of CRC bytes.
SCAN_CRC_BUDGET_RECORDS = 4


class ReplayResult:
    """What replay rebuilt and where the journal ends.

    ``torn_tail``: the bytes at ``end_offset`` carry this epoch and the expected sequence
    number but did not verify: the remains of a torn group, which must be sealed before
    writing.
    """

    def __init__(
        self,
        *,
        live: dict[str, bytes],
        live_bytes: int,
        next_seq: int,
        end_offset: int,
        records: int,
        ops: int,
        tail_reason: str,
        torn_tail: bool,
        bytes_read: int,
    ) -> None:
        self.live = live
        self.live_bytes = live_bytes
        self.next_seq = next_seq
        self.end_offset = end_offset
        self.records = records
        self.ops = ops
        self.tail_reason = tail_reason
        self.torn_tail = torn_tail
        self.bytes_read = bytes_read


class _RegionReader:
    """Reads a region through a sliding buffer, never past the region's end."""

    def __init__(self, dev: BlockDevice, sb: Superblock) -> None:
        self._dev = dev
        self._start_lba = sb.region_start(sb.active_region)
        self._region_bytes = sb.region_bytes
        self._ss = sb.sector_size
        self._base = 0
        self._data = b""
        self._buf = memoryview(b"")
        self.bytes_read = 0

    def raw(self, offset: int, length: int) -> tuple[bytes, int, int]:
        """``(data, start, end)``: up to ``length`` bytes at ``offset`` are ``data[start:end]``
        (fewer only at the region's end). No copy: the caller may keep ``data``."""
        end = min(offset + length, self._region_bytes)
        if offset >= end:
            return b"", 0, 0
        if offset < self._base or end > self._base + len(self._data):
            first = offset // self._ss
            last = (
                min(round_up(max(end, offset + READ_CHUNK_BYTES), self._ss), self._region_bytes)
                // self._ss
            )
            self._data = self._dev.read(self._start_lba + first, last - first)
            self.bytes_read += len(self._data)
            self._base = first * self._ss
            self._buf = memoryview(self._data)
        return self._data, offset - self._base, end - self._base

    def view(self, offset: int, length: int) -> memoryview:
        """Up to ``length`` bytes at ``offset`` (fewer only at the region's end)."""
        _, start, end = self.raw(offset, length)
        return self._buf[start:end]


def _check_header(raw: memoryview, sb: Superblock) -> tuple[tuple[int, ...] | None, str]:
    """The header's fields in ``RECORD_FIELDS`` order (a plain tuple: replay's inner loop
    unpacks it into names; :class:`RecordHeader` costs a little per record), or a reason."""
    if len(raw) < RECORD_HEADER_BYTES:
        return None, "end of region"
    if raw[:4] != RECORD_MAGIC:
        return None, "zeros" if not any(raw) else "no record"
    fields = _unpack_header(raw)
    if fields[_PAYLOAD_BYTES] > sb.record_limit - RECORD_HEADER_BYTES:
        return None, "length out of bounds"
    return fields, ""


def _verify(
    reader: _RegionReader, offset: int, payload_bytes: int, crc: int, sb: Superblock
) -> bool:
    """True if the record at ``offset`` (header already unpacked) fits and its CRC verifies."""
    total = RECORD_HEADER_BYTES + payload_bytes
    if offset + total > sb.region_bytes:
        return False
    # The CRC covers the header from CRC_COVERS_FROM and the payload, which are contiguous.
    covered = reader.view(offset + CRC_COVERS_FROM, total - CRC_COVERS_FROM)
    return crc32c(covered, sb.salt) == crc


def _apply_ops(data: bytes, pos: int, end: int, op_count: int, live: dict[str, bytes]) -> int:
    """Apply a verified TXN's operations, ``data[pos:end]``, to ``live``; returns the
    live-bytes delta. Raises ValueError naming what is malformed (the caller adds where).

    This is replay's inner loop, so it avoids calls it can: values are sliced straight out of
    the read buffer, a key already live was validated when it went in, and an ASCII key is
    checked by one regular expression.
    """
    delta = 0
    unpack_op = OP_HEADER.unpack_from
    header = OP_HEADER_BYTES
    fast_key = NORMAL_ASCII_KEY.fullmatch
    get = live.get
    for _ in range(op_count):
        if pos + header > end:
            raise ValueError("operation header runs past the payload")
        op, flags, key_len, value_len = unpack_op(data, pos)
        pos += header
        key_end = pos + key_len
        value_end = key_end + value_len
        if flags or not 0 < key_len <= MAX_KEY_BYTES or value_end > end:
            raise ValueError(f"malformed operation header at byte {pos - header}")
        try:
            key = data[pos:key_end].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("key is not UTF-8") from None
        old = get(key)
        if old is None and not (fast_key(key) if key.isascii() else is_normal_key(key)):
            raise ValueError(f"key {key!r} is not a normalized /state key")
        if op == JOURNAL_PUT:
            live[key] = data[key_end:value_end]
            delta += header + key_len + value_len
        elif op != JOURNAL_DELETE or value_len:
            raise ValueError(f"unknown operation {op} (value_bytes={value_len})")
        elif old is not None:
            del live[key]
        if old is not None:
            delta -= header + key_len + len(old)
        pos = value_end
    if pos != end:
        raise ValueError(f"{end - pos} bytes after the last operation")
    return delta


def replay(dev: BlockDevice, sb: Superblock) -> ReplayResult:
    """Replay the active region of ``dev`` described by ``sb``."""
    reader = _RegionReader(dev, sb)
    ss = sb.sector_size
    live: dict[str, bytes] = {}
    live_bytes = 0
    offset = 0
    seq = 1
    records = ops = 0
    start_lba = sb.region_start(sb.active_region)
    snapshot_end = sb.snapshot_sectors * sb.sector_size
    while True:
        fields, reason = _check_header(reader.view(offset, RECORD_HEADER_BYTES), sb)
        if fields is None:
            break
        # RECORD_FIELDS' names, in its order (plain names: this is replay's per-record path).
        _magic, crc, epoch, rec_seq, kind, flags, reserved, op_count, payload_bytes = fields
        if not _verify(reader, offset, payload_bytes, crc, sb):
            reason = "crc mismatch"
            break
        if epoch != sb.epoch:
            reason = "stale epoch"
            break
        if rec_seq != seq:
            reason = "stale seq" if rec_seq < seq else "seq ahead"
            break
        lba = start_lba + offset // ss
        if reserved or kind != KIND_TXN:
            raise CorruptionError(
                f"record seq {seq} at LBA {lba}: unknown kind {kind} or non-zero reserved field",
                lba=lba,
            )
        size = round_up(RECORD_HEADER_BYTES + payload_bytes, ss)
        if offset + size == snapshot_end:
            expected = FLAG_SNAPSHOT | FLAG_SNAPSHOT_END
        else:
            expected = FLAG_SNAPSHOT if offset < snapshot_end else 0
        if flags != expected:
            raise CorruptionError(
                f"record seq {seq} at LBA {lba}: flags {flags} do not match its place "
                f"({'inside' if offset < snapshot_end else 'after'} the compaction snapshot)",
                lba=lba,
            )
        data, first, _ = reader.raw(offset, RECORD_HEADER_BYTES + payload_bytes)
        payload_start = first + RECORD_HEADER_BYTES
        try:
            live_bytes += _apply_ops(
                data, payload_start, payload_start + payload_bytes, op_count, live
            )
        except ValueError as exc:
            raise CorruptionError(f"record seq {seq} at LBA {lba}: {exc}", lba=lba) from None
        ops += op_count
        records += 1
        seq += 1
        offset += round_up(RECORD_HEADER_BYTES + payload_bytes, ss)
        if offset >= sb.region_bytes:
            reason = "end of region"
            break

    if offset < snapshot_end:
        raise CorruptionError(
            f"compaction snapshot damaged at LBA {start_lba + offset // ss} ({reason}): it "
            f"was flushed before its superblock, so no crash can explain it",
            lba=start_lba + offset // ss,
        )
    _scan_for_later_records(reader, sb, offset, seq)
    # Debris of the expected group: its epoch and sequence number are there, whatever became
    # of the magic, the CRC or the length (a tear can split the header anywhere). Only such
    # debris could later be completed into a record that verifies, so only it needs a seal.
    place = bytes(reader.view(offset + RECORD_PLACE_OFFSET, RECORD_PLACE_END - RECORD_PLACE_OFFSET))
    torn = place == record_place(sb.epoch, seq)
    return ReplayResult(
        live=live,
        live_bytes=live_bytes,
        next_seq=seq,
        end_offset=offset,
        records=records,
        ops=ops,
        tail_reason=reason,
        torn_tail=torn,
        bytes_read=reader.bytes_read,
    )


class RecordInfo:
    """One record found by :func:`verified_records`: where it is and what its header says."""

    __slots__ = ("flags", "lba", "offset", "op_count", "payload_bytes", "sectors", "seq")
    flags: int
    lba: int
    offset: int
    op_count: int
    payload_bytes: int
    sectors: int
    seq: int

    def __init__(self, **fields: int) -> None:
        for name, value in fields.items():
            setattr(self, name, value)


def verified_records(dev: BlockDevice, sb: Superblock) -> list[RecordInfo]:
    """The records of ``sb``'s epoch at the start of its active region, in order, for as long
    as each verifies and carries the next sequence number (operations are not decoded).

    Used where no superblock vouches for a region's journal (a damaged copy) and by the
    offline tool; replay proper is :func:`replay`.
    """
    reader = _RegionReader(dev, sb)
    ss = sb.sector_size
    found: list[RecordInfo] = []
    offset = 0
    while offset < sb.region_bytes:
        fields, _ = _check_header(reader.view(offset, RECORD_HEADER_BYTES), sb)
        if fields is None:
            break
        header = RecordHeader._make(fields)
        if not _verify(reader, offset, header.payload_bytes, header.crc, sb):
            break
        if header.epoch != sb.epoch or header.seq != len(found) + 1:
            break
        size = round_up(RECORD_HEADER_BYTES + header.payload_bytes, ss)
        found.append(
            RecordInfo(
                offset=offset,
                lba=sb.region_start(sb.active_region) + offset // ss,
                sectors=size // ss,
                seq=header.seq,
                flags=header.flags,
                op_count=header.op_count,
                payload_bytes=header.payload_bytes,
            )
        )
        offset += size
    return found


def _scan_for_later_records(reader: _RegionReader, sb: Superblock, end: int, seq: int) -> None:
    """Raise CorruptionError if a record newer than ``seq`` verifies where it could start.

    The record with sequence number ``seq`` would have started at ``end`` and is at most
    ``record_limit`` bytes, so a record ``seq + 1`` (or later) can only start at a sector
    boundary in ``[end, end + record_limit]``.
    """
    ss = sb.sector_size
    # The window is searched where it lies in the reader's buffer: copying megabytes costs
    # tens of milliseconds under TCG. ``data`` stays valid while candidates move the reader.
    data, start, stop = reader.raw(end, sb.record_limit + ss)
    budget = SCAN_CRC_BUDGET_RECORDS * sb.record_limit
    found = data.find(RECORD_MAGIC, start, stop)
    while found >= 0:
        pos = found - start
        if pos % ss == 0 and found + RECORD_HEADER_BYTES <= stop:
            header = unpack_record_header(data, found)
            if (
                header.epoch == sb.epoch
                and header.seq > seq
                and header.payload_bytes <= sb.record_limit
            ):
                budget -= RECORD_HEADER_BYTES + header.payload_bytes
                if budget < 0:
                    raise CorruptionError(
                        "journal tail holds too many record-like sectors to check; "
                        "refusing to guess where it ends"
                    )
                if _verify(reader, end + pos, header.payload_bytes, header.crc, sb):
                    lba = sb.region_start(sb.active_region) + (end + pos) // ss
                    raise CorruptionError(
                        f"journal damaged at LBA {sb.region_start(sb.active_region) + end // ss}"
                        f" (record seq {seq} missing or unreadable) but record seq {header.seq}"
                        f" was committed after it at LBA {lba}",
                        lba=sb.region_start(sb.active_region) + end // ss,
                    )
        found = data.find(RECORD_MAGIC, found + 1, stop)
