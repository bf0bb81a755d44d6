"""Replay's worst cases on a large device: the bounds hold when the bytes are built to hurt.

The fuzzers use small devices to try many inputs; these cases use a 16 MiB device and the
layouts that cost replay the most: a region packed with the most records it can hold, a tail
packed with record-like headers that the damage scan must consider, and a live set as large as
the region. Replay must finish in bounded time, read only the region and its scan window, and
use memory proportional to what it keeps (the live set), not to what it scans.
"""

from __future__ import annotations

import struct

import pytest

from guest.statefs import MemoryBlockDevice, Store
from guest.statefs.layout import (
    JOURNAL_PUT,
    KIND_TXN,
    RECORD_HEADER,
    RECORD_MAGIC,
    encode_op,
    encode_record,
)
from guest.statefs.replay import READ_CHUNK_BYTES

from support.replaycheck import check_bounds, open_image
from support.tally import Outcomes, outcome_name

SS = 512
SECTORS = 32768  # 16 MiB: record_limit 2 MiB, 16383 one-sector records


def _formatted() -> tuple[bytearray, object]:
    dev = MemoryBlockDevice(SS, SECTORS)
    store = Store.format(dev, volume_id=77, epoch=5)
    sb = store.superblock
    store.close()
    return dev.data, sb


def most_records(image: bytearray, sb) -> None:
    """One-sector records (one PUT each, same key) in every sector of the region."""
    start = sb.region_start(sb.active_region) * SS
    for seq in range(1, sb.region_sectors + 1):
        payload = encode_op(JOURNAL_PUT, b"/state/k", seq.to_bytes(8, "little"))
        record = encode_record(
            kind=KIND_TXN,
            epoch=sb.epoch,
            seq=seq,
            op_count=1,
            payload=payload,
            salt=sb.salt,
            sector_size=SS,
        )
        offset = start + (seq - 1) * SS
        image[offset : offset + SS] = record


def scan_bait(image: bytearray, sb) -> None:
    """A torn first record, then every sector of the scan window holding a header of a later
    record that claims the largest payload (each one the scan must consider)."""
    start = sb.region_start(sb.active_region) * SS
    for lba in range(sb.record_limit // SS + 2):
        header = RECORD_HEADER.pack(
            RECORD_MAGIC,
            0,
            sb.epoch,
            1 if lba == 0 else 2 + lba,
            KIND_TXN,
            0,
            0,
            1,
            sb.record_limit - 32,
        )
        image[start + lba * SS : start + lba * SS + len(header)] = header


def largest_live_set(image: bytearray, sb) -> int:
    """Records full of distinct keys with the largest values, up to 7/8 of the region."""
    start = sb.region_start(sb.active_region) * SS
    offset, seq, kept = 0, 1, 0
    value = bytes(64 * 1024)
    per_record = (sb.record_limit - 64) // (len(value) + 64)
    while offset + 2 * sb.record_limit < sb.region_bytes * 7 // 8:
        ops = [
            encode_op(JOURNAL_PUT, f"/state/big/{seq}/{n}".encode(), value)
            for n in range(per_record)
        ]
        record = encode_record(
            kind=KIND_TXN,
            epoch=sb.epoch,
            seq=seq,
            op_count=len(ops),
            payload=b"".join(ops),
            salt=sb.salt,
            sector_size=SS,
        )
        image[start + offset : start + offset + len(record)] = record
        offset += len(record)
        kept += per_record * len(value)
        seq += 1
    return kept


@pytest.mark.parametrize("layout", ["most records", "scan bait", "largest live set"])
def test_replay_bounds_on_worst_case_layouts(layout):
    image, sb = _formatted()
    kept = 0
    if layout == "most records":
        most_records(image, sb)
    elif layout == "scan bait":
        scan_bait(image, sb)
    else:
        kept = largest_live_set(image, sb)
    outcomes = Outcomes("Fuzz", "journal replay bounds (16 MiB device)", layout)
    opened = open_image(bytes(image), SS)
    check_bounds(opened, len(image), SS)
    outcomes.count("ok" if opened.error is None else outcome_name(opened.error))
    outcomes.observe(opened.seconds, opened.peak_bytes)
    # Memory for what replay scans is bounded by the read chunk and the record limit (the scan
    # window, and the buffer a verified candidate is read into, each held twice while a read
    # copies), whatever the device size; on top of that only the live set it keeps.
    scan_bound = 2 * READ_CHUNK_BYTES + 5 * (sb.record_limit + SS) + (1 << 20)
    assert opened.peak_bytes <= scan_bound + 2 * kept, (
        f"{layout}: peak {opened.peak_bytes} bytes, bound {scan_bound + 2 * kept}"
    )
    if layout == "most records":
        assert opened.error is None
        assert opened.state == {"/state/k": sb.region_sectors.to_bytes(8, "little")}
    elif layout == "scan bait":
        assert opened.error is not None and opened.error.errno == 5
    else:
        assert opened.error is None
        assert sum(len(value) for value in opened.state.values()) == kept
    outcomes.note(f"read {opened.bytes_read >> 10} KiB of a {len(image) >> 20} MiB device")
    outcomes.commit()


def test_scan_bait_header_layout_is_what_the_format_says():
    """The bait above is only bait if its headers parse as records of this epoch."""
    image, sb = _formatted()
    scan_bait(image, sb)
    start = sb.region_start(sb.active_region) * SS + SS
    fields = struct.unpack_from(RECORD_HEADER.format, image, start)
    assert fields[0] == RECORD_MAGIC and fields[2] == sb.epoch and fields[3] == 3
