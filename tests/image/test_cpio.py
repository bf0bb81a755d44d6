"""The newc writer, checked by parsing back what it writes."""

import stat

import pytest

from harness.image.cpio import (
    HEADER_SIZE,
    MAGIC,
    CpioFormatError,
    CpioWriter,
    Entry,
    encode_entry,
    read_entries,
    trailer,
)


def _archive(writer: CpioWriter) -> list[Entry]:
    return list(read_entries(writer.getvalue(close=True)))


def test_round_trip_of_every_kind() -> None:
    writer = CpioWriter(mtime=1234)
    writer.directory("etc")
    writer.file("etc/hello", b"hi\n", 0o640)
    writer.symlink("bin/sh", "busybox")
    writer.chardev("dev/console", 5, 1)
    entries = {e.name: e for e in _archive(writer)}

    assert entries["etc"].kind == "dir"
    assert stat.S_IMODE(entries["etc"].mode) == 0o755
    assert entries["etc"].nlink == 2
    assert entries["etc/hello"].data == b"hi\n"
    assert entries["etc/hello"].mode == stat.S_IFREG | 0o640
    assert entries["etc/hello"].mtime == 1234
    assert entries["bin/sh"].kind == "symlink"
    assert entries["bin/sh"].data == b"busybox"
    assert entries["bin/sh"].mode == stat.S_IFLNK | 0o777
    console = entries["dev/console"]
    assert console.kind == "chardev"
    assert (console.rdevmajor, console.rdevminor) == (5, 1)
    assert console.data == b""


def test_parents_are_created_first_and_once() -> None:
    writer = CpioWriter()
    writer.file("usr/lib/python3.11/os.pyc", b"x")
    writer.file("usr/lib/python3.11/io.pyc", b"y")
    names = [e.name for e in _archive(writer)]
    assert names == [
        "usr",
        "usr/lib",
        "usr/lib/python3.11",
        "usr/lib/python3.11/os.pyc",
        "usr/lib/python3.11/io.pyc",
    ]


def test_existing_dirs_of_an_earlier_segment_are_not_repeated() -> None:
    first = CpioWriter()
    first.file("usr/lib/a", b"a")
    second = CpioWriter(first_ino=first.next_ino, existing_dirs=first.dirs)
    second.file("usr/lib/b", b"b")
    entries = list(read_entries(first.getvalue() + second.getvalue() + trailer()))
    assert [e.name for e in entries] == ["usr", "usr/lib", "usr/lib/a", "usr/lib/b"]
    inos = [e.ino for e in entries]
    assert len(set(inos)) == len(inos)


@pytest.mark.parametrize("name_len", range(1, 9))
@pytest.mark.parametrize("data_len", range(6))
def test_every_entry_starts_on_a_four_byte_boundary(name_len: int, data_len: int) -> None:
    writer = CpioWriter()
    writer.file("n" * name_len, b"d" * data_len)
    writer.file("next", b"z")
    blob = writer.getvalue(close=True)
    assert len(blob) % 4 == 0
    offsets = [i for i in range(0, len(blob), 4) if blob[i : i + 6] == MAGIC]
    assert len(offsets) == 3  # two files + trailer, each aligned
    parsed = list(read_entries(blob))
    assert parsed[0].data == b"d" * data_len
    assert parsed[1].data == b"z"


def test_header_fields_are_hex_and_namesize_counts_the_nul() -> None:
    raw = encode_entry(Entry("abc", stat.S_IFREG | 0o644, b"12345", ino=7))
    assert raw[:6] == MAGIC
    fields = [int(raw[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
    assert fields[0] == 7  # ino
    assert fields[6] == 5  # filesize
    assert fields[11] == 4  # "abc" + NUL
    assert fields[12] == 0  # check
    assert raw[HEADER_SIZE : HEADER_SIZE + 4] == b"abc\0"


def test_trailer_ends_the_archive() -> None:
    blob = trailer()
    assert b"TRAILER!!!\0" in blob
    assert list(read_entries(blob)) == []
    # Anything after the trailer is not read.
    assert list(read_entries(blob + b"garbage")) == []


def test_duplicates_and_empty_names_are_rejected() -> None:
    writer = CpioWriter()
    writer.file("a", b"")
    with pytest.raises(ValueError, match="duplicate"):
        writer.file("a", b"")
    with pytest.raises(ValueError, match="empty"):
        writer.file("/", b"")


def test_reader_reports_damage() -> None:
    blob = CpioWriter().getvalue(close=True)
    with pytest.raises(CpioFormatError, match="magic"):
        list(read_entries(b"070707" + blob[6:]))
    writer = CpioWriter()
    writer.file("f", b"0123456789")
    with pytest.raises(CpioFormatError, match="truncated"):
        list(read_entries(writer.getvalue()[:-8]))
