"""The dm-log-writes reader: entries, flags, the super entry, and bad or truncated logs."""

from __future__ import annotations

import pytest
from crashlog_helpers import LogWriter, pack_super

from harness.crashlog.logformat import (
    FLAG_FUA,
    LOG_MAGIC,
    LogFormatError,
    parse_log,
    read_log,
)

SS = 512


def sector(byte: int, count: int = 1) -> bytes:
    return bytes([byte]) * (SS * count)


def test_entries_in_order_with_their_data_and_flags() -> None:
    log = LogWriter().write(8, sector(1, 2)).flush().write(3, sector(2), FLAG_FUA).mark("after")
    log.discard(20, 4).flush()
    parsed = parse_log(log.bytes())
    kinds = [
        (e.sector, e.nr_sectors, e.is_write, e.is_flush, e.is_fua, e.is_discard, e.is_mark)
        for e in parsed.entries
    ]
    assert kinds == [
        (8, 2, True, False, False, False, False),
        (0, 0, False, True, False, False, False),
        (3, 1, True, False, True, False, False),
        (0, 0, False, False, False, False, True),
        (20, 4, False, False, False, True, False),
        (0, 0, False, True, False, False, False),
    ]
    assert parsed.entries[0].data == sector(1, 2)
    assert parsed.entries[2].data == sector(2)
    assert parsed.entries[3].mark == "after"
    assert parsed.entries[4].data == b""  # a discard carries no data
    assert parsed.counted == 6 and parsed.uncounted == 0
    assert parsed.counts() == {
        "entries": 6, "writes": 2, "sectors": 3, "flushes": 2, "fua": 1, "discards": 1,
        "marks": 1,
    }  # fmt: skip


def test_entries_after_the_last_flush_are_read_though_uncounted() -> None:
    log = LogWriter().write(1, sector(7)).flush().write(2, sector(8)).write(3, sector(9))
    parsed = parse_log(log.bytes())
    assert parsed.counted == 2 and parsed.uncounted == 2
    assert [e.data[0] for e in parsed.entries if e.is_write] == [7, 8, 9]


def test_a_torn_uncounted_tail_ends_the_log_cleanly() -> None:
    log = LogWriter().write(1, sector(7)).flush().write(2, sector(8, 4))
    data = log.bytes()[: -SS * 2]  # the last write's data cut in half
    parsed = parse_log(data)
    assert len(parsed.entries) == 2 and parsed.uncounted == 0


def test_a_mark_spanning_two_sectors() -> None:
    text = "m" * 600
    parsed = parse_log(LogWriter().mark(text).write(5, sector(3)).flush().bytes())
    assert parsed.entries[0].mark == text
    assert parsed.entries[1].sector == 5 and parsed.entries[1].data == sector(3)


def test_the_super_entry_names_sector_size_and_count() -> None:
    log = LogWriter(4096).write(2, bytes(4096)).flush()
    parsed = parse_log(log.bytes())
    assert parsed.sector_size == 4096 and parsed.counted == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short for its super entry"),
        (pack_super(LOG_MAGIC, 1, 0, SS)[:100], "ends inside its 512-byte super"),
        (pack_super(0x1234, 1, 0, SS), "not a dm-log-writes log"),
        (pack_super(LOG_MAGIC, 2, 0, SS), "log version 2 is not supported"),
        (pack_super(LOG_MAGIC, 1, 0, 1000), "not a power of two"),
        (pack_super(LOG_MAGIC, 1, 5, SS), "counts 5 entries"),
    ],
)
def test_a_bad_super_entry_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(LogFormatError, match=message):
        parse_log(data)


def test_a_counted_entry_cut_short_names_the_entry() -> None:
    log = LogWriter().write(1, sector(1)).write(2, sector(2, 3)).flush()
    data = log.bytes()
    cut = data[: -SS * 3]  # inside entry 1's data (the flush is gone too)
    with pytest.raises(LogFormatError, match=r"entry 1 at byte 1536: the log ends inside"):
        parse_log(cut + bytes(SS))


def test_unknown_flags_in_a_counted_entry() -> None:
    log = LogWriter().write(1, sector(1)).flush()
    log.body[16] = 0x40  # flags of entry 0
    with pytest.raises(LogFormatError, match="entry 0 at byte 512: unknown flags 0x40"):
        parse_log(log.bytes())


def test_a_write_beyond_the_device() -> None:
    data = LogWriter().write(10, sector(1, 2)).flush().bytes()
    assert parse_log(data, device_sectors=12).entries[0].sector == 10
    with pytest.raises(LogFormatError, match="beyond the device's 11 sectors"):
        parse_log(data, device_sectors=11)


def test_read_log_names_the_file(tmp_path) -> None:
    path = tmp_path / "writes.log"
    path.write_bytes(b"\0" * SS)
    with pytest.raises(LogFormatError, match=r"writes\.log: not a dm-log-writes log"):
        read_log(path)
