"""docs/storage/statefs.md and guest/statefs/layout.py describe the same bytes."""

import re
from pathlib import Path

import pytest

from guest.statefs import layout, paths, replay
from guest.statefs.layout import (
    JOURNAL_PUT,
    KIND_TXN,
    RECORD_HEADER_BYTES,
    encode_op,
    encode_record,
    volume_salt,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "storage" / "statefs.md"


def doc_table(heading: str) -> list[tuple[int, int, str, str]]:
    """Rows (offset, size, field, meaning) of the first table after ``### heading``."""
    text = DOC.read_text()
    section = text.split(f"### {heading}\n", 1)[1]
    rows = []
    for line in section.splitlines():
        match = re.match(r"\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\w+)\s*\|\s*(.*?)\s*\|$", line)
        if match:
            rows.append((int(match[1]), int(match[2]), match[3], match[4]))
        elif rows and not line.startswith("|"):
            break
    return rows


def code_table(fields) -> list[tuple[int, int, str]]:
    import struct

    rows, offset = [], 0
    for name, code, _ in fields:
        size = struct.calcsize("<" + code)
        rows.append((offset, size, name))
        offset += size
    return rows


@pytest.mark.parametrize(
    ("heading", "fields"),
    [
        ("Superblock", layout.SUPERBLOCK_FIELDS),
        ("Record header", layout.RECORD_FIELDS),
        ("Operation", layout.OP_FIELDS),
    ],
)
def test_doc_tables_match_the_structs(heading, fields):
    documented = doc_table(heading)
    assert [row[:3] for row in documented] == code_table(fields)
    meanings = [meaning.replace("`", "") for *_, meaning in documented]
    assert meanings == [meaning for *_, meaning in fields]


def test_struct_sizes_quoted_in_the_doc():
    text = DOC.read_text()
    assert f"{layout.SUPERBLOCK_BYTES} bytes" in text.split("### Superblock", 1)[1][:300]
    assert f"{RECORD_HEADER_BYTES} bytes" in text.split("### Record header", 1)[1][:100]


def test_worked_example_is_what_the_code_writes():
    payload = encode_op(JOURNAL_PUT, b"/state/boot/active", b"A")
    record = encode_record(
        kind=KIND_TXN, epoch=7, seq=1, op_count=1, payload=payload, salt=volume_salt(1),
        sector_size=512,
    )  # fmt: skip
    text = DOC.read_text().split("### Worked example", 1)[1]
    dump = text.split("```\n", 2)[1]
    documented = bytes.fromhex(
        "".join(line[6:] for line in dump.splitlines() if re.match(r"[0-9a-f]{4}  ", line))
    )
    assert documented == record[: len(documented)]
    assert len(documented) == RECORD_HEADER_BYTES + len(payload)
    assert f"salt `{volume_salt(1):#010x}`" in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_KEY_BYTES", paths.MAX_KEY_BYTES),
        ("MAX_NAME_BYTES", paths.MAX_NAME_BYTES),
        ("MAX_RAW_KEY_BYTES", paths.MAX_RAW_KEY_BYTES),
        ("MAX_VALUE_BYTES", layout.MAX_VALUE_BYTES),
        ("DEFAULT_RECORD_LIMIT", f"{layout.DEFAULT_RECORD_LIMIT >> 20} MiB"),
        ("MIN_RECORDS_PER_REGION", layout.MIN_RECORDS_PER_REGION),
        ("READ_CHUNK_BYTES", f"{replay.READ_CHUNK_BYTES >> 20} MiB"),
        ("SCAN_CRC_BUDGET_RECORDS", replay.SCAN_CRC_BUDGET_RECORDS),
    ],
)
def test_limits_table_quotes_the_constants(name, value):
    assert re.search(rf"\| `{name}` \| {value} \|", DOC.read_text()), name


def test_named_record_fields_are_the_field_table():
    """Readers take record fields by name; the names and places are the table's."""
    assert layout.RecordHeader._fields == tuple(name for name, _, _ in layout.RECORD_FIELDS)
    rows = {name: (offset, size) for offset, size, name in code_table(layout.RECORD_FIELDS)}
    assert rows["epoch"][0] == layout.RECORD_PLACE_OFFSET
    assert rows["seq"][0] + rows["seq"][1] == layout.RECORD_PLACE_END
    record = encode_record(
        kind=KIND_TXN, epoch=7, seq=9, op_count=0, payload=b"", salt=1, sector_size=512
    )
    header = layout.unpack_record_header(record)
    assert (header.epoch, header.seq, header.magic) == (7, 9, layout.RECORD_MAGIC)
    assert record[layout.RECORD_PLACE_OFFSET : layout.RECORD_PLACE_END] == layout.record_place(7, 9)
