"""Compaction: the live set rewritten as a fresh journal for the other region.

Building the snapshot is pure (bytes in, records out) so it is tested without a device; the
store writes the records into the inactive region, flushes, and only then writes the superblock
that names that region. That superblock write is the single commit point: a crash before it
leaves the old region and the old superblock untouched, a crash during it leaves a superblock
copy whose CRC fails, so the older copy (old state, whole) wins.
"""

from collections.abc import Iterator, Mapping

from guest.statefs.layout import (
    FLAG_SNAPSHOT,
    FLAG_SNAPSHOT_END,
    KIND_TXN,
    MAX_OP_BYTES,
    OP_HEADER,
    OP_PUT,
    RECORD_HEADER_BYTES,
    encode_record,
)


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
    pack = OP_HEADER.pack
    for key in sorted(live):
        value = live[key]
        encoded = key.encode("utf-8")
        size = OP_HEADER.size + len(encoded) + len(value)
        if ops and len(payload) + size > payload_limit:
            yield encode_record(
                kind=KIND_TXN, epoch=epoch, seq=seq, op_count=ops, payload=payload,
                salt=salt, sector_size=sector_size, flags=FLAG_SNAPSHOT,
            )  # fmt: skip
            seq += 1
            payload = bytearray()
            ops = 0
        payload += pack(OP_PUT, 0, len(encoded), len(value))
        payload += encoded
        payload += value
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
