"""The journal and undo formats: round trips, a torn tail is a clean end, damage is reported."""

import pytest

from harness.powercut.errors import CacheFormatError
from harness.powercut.journal import (
    JOURNAL_HEADER_SIZE,
    RECORD_HEADER_SIZE,
    Extent,
    decode_journal,
    decode_undo,
    encode_journal_header,
    encode_record,
    encode_undo,
)

WRITES = [Extent(0, b"a" * 512), Extent(4096, b"b" * 2048), Extent(1000, b"c" * 3)]


def journal_bytes(generation: int = 7) -> bytes:
    return encode_journal_header(generation) + b"".join(encode_record(w) for w in WRITES)


def test_journal_round_trip():
    contents = decode_journal(journal_bytes())
    assert contents.generation == 7
    assert contents.writes == tuple(WRITES)
    assert contents.torn_tail_bytes == 0


def test_an_empty_journal_is_just_a_header():
    contents = decode_journal(encode_journal_header(3))
    assert (contents.generation, contents.writes) == (3, ())
    assert len(encode_journal_header(3)) == JOURNAL_HEADER_SIZE


@pytest.mark.parametrize("cut", [1, RECORD_HEADER_SIZE - 1, RECORD_HEADER_SIZE, 5, 2])
def test_a_short_final_record_is_a_torn_tail_not_an_error(cut):
    data = journal_bytes()
    last = len(encode_record(WRITES[-1]))
    torn = data[: len(data) - last + cut]
    contents = decode_journal(torn)
    assert contents.writes == tuple(WRITES[:-1])
    assert contents.torn_tail_bytes == cut


def test_a_damaged_record_in_the_middle_is_reported_with_its_offset():
    data = bytearray(journal_bytes())
    second = JOURNAL_HEADER_SIZE + len(encode_record(WRITES[0]))
    data[second + RECORD_HEADER_SIZE + 10] ^= 0xFF
    with pytest.raises(CacheFormatError, match=f"record at {second} \\(write 1\\) CRC mismatch"):
        decode_journal(bytes(data))


def test_a_damaged_header_is_reported():
    data = bytearray(journal_bytes())
    data[9] ^= 1
    with pytest.raises(CacheFormatError, match="bad header"):
        decode_journal(bytes(data))
    with pytest.raises(CacheFormatError, match="shorter than its header"):
        decode_journal(b"SQPJ")


def test_an_absurd_length_is_damage_not_a_torn_tail():
    data = encode_journal_header(1) + (0).to_bytes(8, "little") + (1 << 31).to_bytes(4, "little")
    with pytest.raises(CacheFormatError, match="claims"):
        decode_journal(data + bytes(4))


def test_undo_round_trip():
    data = encode_undo(5, WRITES)
    record = decode_undo(data)
    assert record.generation == 5
    assert record.extents == tuple(WRITES)


@pytest.mark.parametrize("position", [0, 10, 20, 40, -1])
def test_any_damaged_byte_of_an_undo_record_is_an_error(position):
    data = bytearray(encode_undo(5, WRITES))
    data[position] ^= 0x40
    with pytest.raises(CacheFormatError):
        decode_undo(bytes(data))


def test_a_truncated_undo_record_is_an_error():
    data = encode_undo(5, WRITES)
    with pytest.raises(CacheFormatError):
        decode_undo(data[:-100])
