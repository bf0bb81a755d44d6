"""On-disk format of statefs, version 3: every constant, width and struct in one place.

``docs/storage/statefs.md`` describes this byte for byte; ``tests/statefs/test_format_doc.py``
reads the field tables below and checks the document's tables agree. All integers are
little-endian. The layout of a device with ``N`` sectors of ``S`` bytes::

    LBA 0            superblock slot 0
    LBA 1            superblock slot 1
    LBA 2 .. 2+R     journal region 0      R = (N - 2) // 2 sectors
    LBA 2+R .. 2+2R  journal region 1

One region is active (named by the newest valid superblock); the other receives the next
compaction. A region holds a sequence of records, each starting on a sector boundary.
"""

import struct
from collections import namedtuple

from guest.statefs.crc import crc32c
from guest.statefs.paths import MAX_KEY_BYTES
from guest.values import Value

FORMAT_VERSION = 3

SUPERBLOCK_MAGIC = b"NXSB"
RECORD_MAGIC = b"NXSF"

SUPERBLOCK_SLOTS = 2
REGION_COUNT = 2

#: Record kind. A TXN carries the operations of one commit group (one ``sync()``, or one chunk
#: of a compaction snapshot); the field leaves room for other kinds in later format versions.
KIND_TXN = 1

#: Record flags: the record belongs to a compaction snapshot (written before the superblock that
#: names its region), not to a commit group appended afterwards; and, with it, the record is the
#: snapshot's last one (an empty live set is one record of no operations). Together they tell
#: a complete snapshot without the superblock that names it. Every other flag bit is zero.
FLAG_SNAPSHOT = 1
FLAG_SNAPSHOT_END = 2

#: Journal operation codes (the ``op`` field of an operation header). statefsd's OP_BATCH
#: reuses this encoding; its request codes (``guest.statefsd.protocol``) are another space.
JOURNAL_PUT = 1
JOURNAL_DELETE = 2

#: Sector sizes a store can be formatted with.
SECTOR_SIZES = (512, 1024, 2048, 4096)

#: Largest value, in bytes (a larger put fails with EFBIG).
MAX_VALUE_BYTES = 64 * 1024

#: Field tables: (name, struct code, meaning). The structs below are built from them.
SUPERBLOCK_FIELDS = (
    ("magic", "4s", 'b"NXSB"'),
    ("crc", "I", "CRC-32C of bytes 8..67 of this struct"),
    ("version", "H", "format version, 3"),
    ("struct_bytes", "H", "size of this struct, 68"),
    ("sector_size", "I", "device sector size the store was formatted with"),
    ("sector_count", "Q", "device sectors the store was formatted with"),
    ("generation", "Q", "incremented on every superblock write; the higher valid copy wins"),
    ("epoch", "I", "records of the active region must carry this epoch"),
    ("active_region", "I", "0 or 1"),
    ("region_sectors", "Q", "sectors in each region (R)"),
    ("volume_id", "Q", "random at format; salts every record CRC"),
    ("record_limit", "I", "largest record in bytes, header included"),
    ("snapshot_sectors", "I", "sectors at the start of the active region written by compaction"),
    ("epoch_ceiling", "I", "highest epoch ever handed out; a compaction takes a higher one"),
)
RECORD_FIELDS = (
    ("magic", "4s", 'b"NXSF"'),
    ("crc", "I", "CRC-32C seeded with the volume salt, of bytes 8..31 and the payload"),
    ("epoch", "I", "the superblock's epoch when written"),
    ("seq", "Q", "commit group number in this epoch, from 1, no gaps"),
    ("kind", "B", "1 = TXN"),
    ("flags", "B", "0 = appended commit group, 1 = snapshot record, 3 = last snapshot record"),
    ("reserved", "H", "zero"),
    ("op_count", "I", "operations in the payload"),
    ("payload_bytes", "I", "bytes of operations after this header"),
)
OP_FIELDS = (
    ("op", "B", "1 = PUT, 2 = DELETE"),
    ("flags", "B", "zero"),
    ("key_bytes", "H", "UTF-8 key length, 1..512"),
    ("value_bytes", "I", "value length, 0..65536 (0 for DELETE)"),
)


def _struct(fields: tuple[tuple[str, str, str], ...]) -> struct.Struct:
    return struct.Struct("<" + "".join(code for _, code, _ in fields))


SUPERBLOCK = _struct(SUPERBLOCK_FIELDS)
RECORD_HEADER = _struct(RECORD_FIELDS)
OP_HEADER = _struct(OP_FIELDS)

SUPERBLOCK_BYTES = SUPERBLOCK.size  # 68
RECORD_HEADER_BYTES = RECORD_HEADER.size  # 32
OP_HEADER_BYTES = OP_HEADER.size  # 8

#: A record header by field name; the names are RECORD_FIELDS' (a test holds them equal).
RecordHeader = namedtuple(
    "RecordHeader",
    ["magic", "crc", "epoch", "seq", "kind", "flags", "reserved", "op_count", "payload_bytes"],
)


def field_offset(fields: tuple[tuple[str, str, str], ...], name: str) -> int:
    """Byte offset of field ``name`` in the struct built from ``fields``."""
    codes: list[str] = []
    for field, code, _ in fields:
        if field == name:
            return struct.calcsize("<" + "".join(codes))
        codes.append(code)
    raise KeyError(name)


#: Where a record header holds its epoch and seq, the two fields that say which commit group
#: a sector belongs to (what a torn header keeps even when its magic, CRC or length are gone).
RECORD_PLACE = struct.Struct("<IQ")
RECORD_PLACE_OFFSET = field_offset(RECORD_FIELDS, "epoch")
RECORD_PLACE_END = RECORD_PLACE_OFFSET + RECORD_PLACE.size

#: Byte offset of the first CRC-covered byte in a superblock and in a record header.
CRC_COVERS_FROM = 8

#: Largest single operation: op header + longest key + largest value.
MAX_OP_BYTES = OP_HEADER_BYTES + MAX_KEY_BYTES + MAX_VALUE_BYTES
#: Default largest record (header + payload). It bounds one commit group, the memory replay
#: needs for one record, and the window replay scans past the end of the journal.
DEFAULT_RECORD_LIMIT = 4 * 1024 * 1024
#: A region must hold at least this many records of the largest size.
MIN_RECORDS_PER_REGION = 4


#: Epochs are 32-bit and compared modulo 2**32: ``b`` is "after" ``a`` when
#: ``epoch_distance(a, b)`` is below EPOCH_HALF (one compaction advances the ceiling by 1 or 2).
EPOCH_MASK = 0xFFFFFFFF
EPOCH_HALF = 1 << 31


def epoch_distance(a: int, b: int) -> int:
    """How many epochs ``b`` lies after ``a``, modulo 2**32."""
    return (b - a) & EPOCH_MASK


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def min_record_limit(sector_size: int) -> int:
    """Smallest record limit that still holds one largest operation."""
    return round_up(RECORD_HEADER_BYTES + MAX_OP_BYTES, sector_size)


_SALTS: dict[int, int] = {}


def volume_salt(volume_id: int) -> int:
    """Seed for record CRCs: records of another volume (an earlier format) never verify."""
    return crc32c(volume_id.to_bytes(8, "little"))


class Superblock(Value):
    """Decoded superblock (the CRC is checked on decode and recomputed on encode)."""

    __slots__ = (
        "active_region",
        "epoch",
        "epoch_ceiling",
        "generation",
        "record_limit",
        "region_sectors",
        "sector_count",
        "sector_size",
        "snapshot_sectors",
        "volume_id",
    )
    sector_size: int
    sector_count: int
    generation: int
    epoch: int
    active_region: int
    region_sectors: int
    volume_id: int
    record_limit: int
    snapshot_sectors: int
    epoch_ceiling: int

    def __init__(
        self,
        sector_size: int,
        sector_count: int,
        generation: int,
        epoch: int,
        active_region: int,
        region_sectors: int,
        volume_id: int,
        record_limit: int,
        snapshot_sectors: int = 0,
        epoch_ceiling: int | None = None,
    ) -> None:
        # snapshot_sectors: sectors at the start of the active region that compaction wrote
        # and flushed before this superblock named the region (damage there is never a tear).
        # epoch_ceiling: the highest epoch any compaction was ever allowed to write records
        # with (the current epoch when not given: a fresh format).
        self._set(
            sector_size=sector_size,
            sector_count=sector_count,
            generation=generation,
            epoch=epoch,
            active_region=active_region,
            region_sectors=region_sectors,
            volume_id=volume_id,
            record_limit=record_limit,
            snapshot_sectors=snapshot_sectors,
            epoch_ceiling=epoch if epoch_ceiling is None else epoch_ceiling,
        )

    def region_start(self, region: int) -> int:
        """First LBA of ``region``."""
        return SUPERBLOCK_SLOTS + region * self.region_sectors

    @property
    def region_bytes(self) -> int:
        return self.region_sectors * self.sector_size

    @property
    def salt(self) -> int:
        """The record CRC seed (computed once per superblock: replay asks for every record)."""
        salt = _SALTS.get(self.volume_id)
        if salt is None:
            if len(_SALTS) >= 64:  # a handful of volumes in practice; fuzzing makes many
                _SALTS.clear()
            salt = _SALTS[self.volume_id] = volume_salt(self.volume_id)
        return salt

    def encode(self) -> bytes:
        """The superblock sector: the 64-byte struct followed by zeros."""
        body = SUPERBLOCK.pack(
            SUPERBLOCK_MAGIC,
            0,
            FORMAT_VERSION,
            SUPERBLOCK_BYTES,
            self.sector_size,
            self.sector_count,
            self.generation,
            self.epoch,
            self.active_region,
            self.region_sectors,
            self.volume_id,
            self.record_limit,
            self.snapshot_sectors,
            self.epoch_ceiling,
        )
        crc = crc32c(body[CRC_COVERS_FROM:])
        body = body[:4] + crc.to_bytes(4, "little") + body[CRC_COVERS_FROM:]
        return body + bytes(self.sector_size - SUPERBLOCK_BYTES)


def decode_superblock(sector: bytes) -> tuple[Superblock | None, str]:
    """Decode one superblock sector: ``(superblock, "")`` or ``(None, reason)``.

    Reasons are stable strings (tests and fsck compare them): ``empty`` (never written: no
    magic, and not a superblock whose magic alone is damaged), ``magic damaged`` (the CRC of
    the rest verifies), ``crc mismatch``, ``unsupported version N``, ``bad field: ...``.
    """
    if len(sector) < SUPERBLOCK_BYTES:
        return None, "empty"
    fields = SUPERBLOCK.unpack_from(sector)
    (magic, crc, version, struct_bytes, sector_size, sector_count, generation, epoch, active,
     region_sectors, volume_id, record_limit, snapshot_sectors, epoch_ceiling) = fields  # fmt: skip
    crc_ok = crc32c(sector[CRC_COVERS_FROM:SUPERBLOCK_BYTES]) == crc
    if magic != SUPERBLOCK_MAGIC:
        # The CRC does not cover the magic: if the rest verifies, this is our superblock with
        # a damaged magic, which must never pass for a blank device.
        return None, "magic damaged" if crc_ok and any(sector[:SUPERBLOCK_BYTES]) else "empty"
    if not crc_ok:
        return None, "crc mismatch"
    if version != FORMAT_VERSION:
        return None, f"unsupported version {version}"
    problems = []
    if struct_bytes != SUPERBLOCK_BYTES:
        problems.append(f"struct_bytes={struct_bytes}")
    if sector_size not in SECTOR_SIZES:
        problems.append(f"sector_size={sector_size}")
    if active not in (0, 1):
        problems.append(f"active_region={active}")
    if region_sectors < 1 or SUPERBLOCK_SLOTS + REGION_COUNT * region_sectors > sector_count:
        problems.append(f"region_sectors={region_sectors}")
    elif sector_size in SECTOR_SIZES and (
        record_limit < min_record_limit(sector_size)
        or record_limit % sector_size
        or record_limit * MIN_RECORDS_PER_REGION > region_sectors * sector_size
    ):
        problems.append(f"record_limit={record_limit}")
    if region_sectors >= 1 and snapshot_sectors > region_sectors:
        problems.append(f"snapshot_sectors={snapshot_sectors}")
    if epoch_distance(epoch, epoch_ceiling) >= EPOCH_HALF:
        problems.append(f"epoch_ceiling={epoch_ceiling}")
    if problems:
        return None, "bad field: " + ", ".join(problems)
    return (
        Superblock(
            sector_size=sector_size,
            sector_count=sector_count,
            generation=generation,
            epoch=epoch,
            active_region=active,
            region_sectors=region_sectors,
            volume_id=volume_id,
            record_limit=record_limit,
            snapshot_sectors=snapshot_sectors,
            epoch_ceiling=epoch_ceiling,
        ),
        "",
    )


def unpack_record_header(data: bytes | bytearray | memoryview, offset: int = 0) -> RecordHeader:
    """The record header at ``data[offset:]``, fields by name (nothing is checked)."""
    return RecordHeader._make(RECORD_HEADER.unpack_from(data, offset))


def record_place(epoch: int, seq: int) -> bytes:
    """The bytes at ``RECORD_PLACE_OFFSET`` of the header of record ``seq`` of ``epoch``."""
    return RECORD_PLACE.pack(epoch, seq)


_pack_op = OP_HEADER.pack


def append_op(buf: bytearray, op: int, key: bytes, value: bytes = b"") -> None:
    """Append one encoded operation to ``buf`` (the store's hot path: no temporary bytes)."""
    buf += _pack_op(op, 0, len(key), len(value))
    buf += key
    buf += value


def encode_op(op: int, key: bytes, value: bytes = b"") -> bytes:
    """One encoded operation (a journal payload, or one entry of statefsd's OP_BATCH)."""
    buf = bytearray()
    append_op(buf, op, key, value)
    return bytes(buf)


def encode_record(
    *,
    kind: int,
    epoch: int,
    seq: int,
    op_count: int,
    payload: bytes | bytearray,
    salt: int,
    sector_size: int,
    flags: int = 0,
) -> bytes:
    """A record padded with zeros to whole sectors, ready to write at a sector boundary."""
    header = RECORD_HEADER.pack(RECORD_MAGIC, 0, epoch, seq, kind, flags, 0, op_count, len(payload))
    crc = crc32c(payload, crc32c(header[CRC_COVERS_FROM:], salt))
    total = RECORD_HEADER_BYTES + len(payload)
    padded = round_up(total, sector_size)
    return b"".join(
        (header[:4], crc.to_bytes(4, "little"), header[CRC_COVERS_FROM:], payload,
         bytes(padded - total))
    )  # fmt: skip
