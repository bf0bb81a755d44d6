"""The console drainer: every byte logged, timed lines, readers that never steal data."""

import re
import socket
import threading
import time
from pathlib import Path

import pytest

from harness.deadline import Deadline
from harness.errors import ConsoleError, DeadlineExceeded
from harness.vm.console import Console, ConsoleLog, Transcript


@pytest.fixture
def wired(tmp_path: Path):
    """A Console on one end of a socketpair; the test plays QEMU on the other end."""
    ours, qemu = socket.socketpair()
    console = Console(
        ours,
        ConsoleLog(tmp_path / "uart.log", tmp_path / "uart.timestamps"),
        origin=time.monotonic(),
        name="t",
    )
    console.start()
    yield console, qemu, tmp_path
    qemu.close()
    console.close()


def test_every_byte_reaches_uart_log_even_at_eof(wired):
    console, qemu, tmp_path = wired
    payload = bytes(range(256)) * 64 + "héllo ✓\r\nlast line without newline".encode()
    for start in range(0, len(payload), 777):
        qemu.sendall(payload[start : start + 777])
    qemu.close()  # QEMU died
    assert console.wait_closed(5)
    console.close()
    assert (tmp_path / "uart.log").read_bytes() == payload
    assert console.eof


def test_a_fast_flood_loses_nothing(wired):
    console, qemu, tmp_path = wired
    lines = [f"line {i:06d} {'x' * 50}\r\n".encode() for i in range(20000)]
    writer = threading.Thread(target=lambda: (qemu.sendall(b"".join(lines)), qemu.close()))
    writer.start()
    assert console.wait_closed(10)
    writer.join()
    console.close()
    assert (tmp_path / "uart.log").read_bytes() == b"".join(lines)
    stamps = (tmp_path / "uart.timestamps").read_text().splitlines()
    assert len(stamps) == 20000
    assert stamps[-1].split(maxsplit=1)[1] == f"line 019999 {'x' * 50}"


def test_timestamps_are_seconds_since_launch_per_line(wired):
    console, qemu, tmp_path = wired
    qemu.sendall(b"first\r\nsec")
    time.sleep(0.3)
    qemu.sendall(b"ond\r\n")
    qemu.close()
    console.wait_closed(5)
    console.close()
    records = [
        line.split(maxsplit=1) for line in (tmp_path / "uart.timestamps").read_text().splitlines()
    ]
    assert [text for _, text in records] == ["first", "second"]
    first, second = (float(at) for at, _ in records)
    assert 0 <= first < second
    assert second - first >= 0.25  # a line is timed by its newline


def test_utf8_split_across_reads_decodes_whole(wired):
    console, qemu, _ = wired
    data = "keystored: ✓ ok\n".encode()
    cut = data.index("✓".encode()) + 1
    qemu.sendall(data[:cut])
    time.sleep(0.1)
    qemu.sendall(data[cut:])
    match = console.expect("✓ ok", Deadline(5))
    assert match.group(0) == "✓ ok"


def test_expect_consumes_and_other_readers_still_see_everything(wired):
    console, qemu, _ = wired
    qemu.sendall(b"a=1\nb=2\na=3\n")
    assert console.expect(re.compile(r"a=(\d)"), Deadline(5)).group(1) == "1"
    assert console.expect(re.compile(r"a=(\d)"), Deadline(5)).group(1) == "3"
    chunks, cursor, ended = console.transcript.read(0, timeout=1)
    assert "".join(text for text, _ in chunks) == "a=1\nb=2\na=3\n"
    assert not ended
    assert cursor == len("a=1\nb=2\na=3\n")


def test_expect_times_out_with_the_console_tail(wired):
    console, qemu, _ = wired
    qemu.sendall(b"booting...\n")
    with pytest.raises(DeadlineExceeded) as caught:
        console.expect("never", Deadline(0.3, label="test"))
    assert "booting..." in caught.value.evidence


def test_expect_after_eof_raises(wired):
    console, qemu, _ = wired
    qemu.sendall(b"bye\n")
    qemu.close()
    with pytest.raises(ConsoleError, match="console ended before"):
        console.expect("never", Deadline(5))


def test_send_reaches_qemu_and_fails_after_close(wired):
    console, qemu, _ = wired
    console.send("echo hi\n")
    assert qemu.recv(100) == b"echo hi\n"
    qemu.close()
    console.wait_closed(5)
    with pytest.raises(ConsoleError, match="closed"):
        console.send(b"x")


def test_transcript_merges_byte_by_byte_lines_and_keeps_cursors_exact():
    transcript = Transcript()
    for index, char in enumerate("ab\ncd"):
        transcript.append(char, float(index))
    chunks, cursor, _ = transcript.read(0)
    assert chunks == [("ab\n", 2.0), ("cd", 4.0)]
    transcript.append("e\n", 5.0)
    more, cursor2, _ = transcript.read(cursor)
    assert more == [("e\n", 5.0)]  # the rest of the merged chunk, not a repeat
    assert cursor2 == 7
    transcript.close()
    assert transcript.read(cursor2) == ([], 7, True)
    assert transcript.tail(1) == "cde"
