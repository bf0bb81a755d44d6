"""A parsed log as a crash-simulator recording: flags, commit marks from the workload's keys,
compactions counted, and the figures blocks the commands write into the docs."""

from __future__ import annotations

from pathlib import Path

import pytest
from crashlog_helpers import LogWriter

from harness.crashlog.history import recording_from_log
from harness.crashlog.logformat import FLAG_FUA, LogFormatError, parse_log
from harness.crashsim import Begin, End, Flush, Write
from harness.docfigures import update_block
from harness.errors import ConfigError

SS = 512


def key_sector(seq: int, offset: int = 100) -> bytes:
    data = bytearray(SS)
    key = f"/state/powercut/log/{seq:010d}".encode()
    data[offset : offset + len(key)] = key
    return bytes(data)


def kinds(events) -> list[str]:
    names = {Write: "W", Flush: "F", Begin: "B", End: "E"}
    return [names[type(event)] for event in events]


def test_fua_discard_and_mark_become_writes_flushes_and_labels():
    log = LogWriter().write(4, bytes([7]) * SS, FLAG_FUA).mark("here").discard(4, 1).flush()
    history = recording_from_log(parse_log(log.bytes()), 16)
    assert kinds(history.recording.events) == ["W", "F", "W", "F"]
    assert history.recording.events[2].data == bytes(SS)  # the discard reads back as zeros
    assert history.marks == [(2, "here")]
    assert history.final_image == bytes(16 * SS)


def test_each_new_key_closes_the_previous_write_and_opens_its_own():
    log = LogWriter().write(3, key_sector(1)).flush().write(4, key_sector(2)).flush()
    history = recording_from_log(parse_log(log.bytes()), 16, acked_end=2)
    assert kinds(history.recording.events) == ["E", "B", "W", "F", "E", "B", "W", "F", "E"]
    assert history.issued == 2 and history.heads == [0, 1, 2]
    everywhere = history.recording.allowed(0, len(history.recording.events))
    assert everywhere == frozenset()  # no single head is right at every point
    last = len(history.recording.events)
    assert history.allowed_heads(history.recording.allowed(last, last)) == [2]


def test_a_key_split_across_two_requests_is_found_in_the_second():
    whole = f"/state/powercut/log/{5:010d}".encode()
    head = bytes(SS - 10) + whole[:10]  # the key's first 10 bytes end sector 6
    tail = whole[10:] + bytes(SS - len(whole) + 10)
    log = LogWriter().write(6, head).write(7, tail).flush()
    history = recording_from_log(parse_log(log.bytes()), 16)
    assert kinds(history.recording.events) == ["W", "E", "B", "W", "F"]
    assert history.issued == 5


def test_a_write_beyond_the_disk_is_refused():
    log = LogWriter().write(15, bytes(2 * SS)).flush()
    with pytest.raises(LogFormatError, match="beyond the disk's 16 sectors"):
        recording_from_log(parse_log(log.bytes()), 16)


def test_figures_blocks_are_rewritten_in_place(tmp_path: Path):
    doc = tmp_path / "doc.md"
    doc.write_text("a\n<!-- figures:x -->\nold\n<!-- /figures:x -->\nb\n")
    update_block(doc, "x", ["$ cmd", "1 judged"])
    assert (
        doc.read_text()
        == "a\n<!-- figures:x -->\n```\n$ cmd\n1 judged\n```\n<!-- /figures:x -->\nb\n"
    )
    with pytest.raises(ConfigError, match="figures:y"):
        update_block(doc, "y", [])
