"""The serial console: drained continuously, logged byte for byte, read by whoever waits.

QEMU's serial port blocks the guest's vCPU when its chardev cannot take more bytes, so a
console that is read only while a test calls ``expect()`` changes the guest's timing (a
power-cut test that sleeps would stall the guest on its next ``print``). Here one thread per VM
reads the console the whole time QEMU lives, through pexpect's ``fdspawn`` on the serial socket,
and hands each chunk to two consumers:

* :class:`ConsoleLog` appends the raw bytes to ``uart.log`` and one ``<seconds> <line>`` record
  per line to ``uart.timestamps`` (flushed per chunk: a harness crash loses nothing written);
* :class:`Transcript` keeps the decoded text with arrival times, for the matcher and
  :meth:`Console.expect` (cursor based, so readers never steal each other's data).

The thread stops at EOF, which QEMU's exit causes, so output printed just before a crash or a
power cut is still read and logged. Times are seconds since QEMU's launch (``origin``).
"""

from __future__ import annotations

import bisect
import codecs
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TextIO

import pexpect
import pexpect.fdpexpect

from harness.deadline import Deadline
from harness.errors import ConsoleError
from harness.lines import LineSplitter, split_lines

log = logging.getLogger(__name__)

Chunk = tuple[str, float]

READ_SIZE = 65536
_POLL_INTERVAL = 0.2
EXPECT_WINDOW = 256 * 1024


def _decoder() -> codecs.IncrementalDecoder:
    # A UTF-8 sequence split across two reads decodes whole; invalid bytes become U+FFFD
    # (uart.log keeps the raw bytes).
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


class ConsoleLog:
    """``uart.log`` (raw bytes) plus ``uart.timestamps`` (one timed record per line)."""

    def __init__(self, uart_log: Path, timestamps: Path) -> None:
        self._raw: BinaryIO = open(uart_log, "ab", buffering=0)  # noqa: SIM115 (closed in close())
        self._stamps: TextIO = open(timestamps, "a", encoding="utf-8")  # noqa: SIM115
        self._lines = LineSplitter()

    def write(self, data: bytes, text: str, at: float) -> None:
        self._raw.write(data)
        for line, _ in self._lines.feed(text, at):
            self._stamps.write(f"{at:10.6f} {line}\n")
        self._stamps.flush()

    def close(self) -> None:
        last = self._lines.flush()
        if last is not None and last[1] is not None:
            self._stamps.write(f"{last[1]:10.6f} {last[0]}\n")
        self._raw.close()
        self._stamps.close()


class Transcript:
    """Decoded console text with arrival times; thread-safe and waitable.

    Readers hold a cursor (a character offset) so any number of them read the same stream.
    Under TCG the UART delivers about one byte per read; consecutive pieces of a line that has
    no newline yet are merged into one chunk whose time is that of its latest piece, so a
    chunk is at most one line and a line's time is when its newline arrived.
    """

    MERGE_LIMIT = 4096

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._texts: list[str] = []
        self._times: list[float] = []
        self._size = 0
        self._cond = threading.Condition()
        self._closed = False

    def append(self, text: str, at: float) -> None:
        if not text:
            return
        with self._cond:
            last = self._texts[-1] if self._texts else None
            if last is not None and "\n" not in last and len(last) < self.MERGE_LIMIT:
                self._texts[-1] = last + text
                self._times[-1] = at
            else:
                self._starts.append(self._size)
                self._texts.append(text)
                self._times.append(at)
            self._size += len(text)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def size(self) -> int:
        return self._size

    def read(self, cursor: int, timeout: float | None = 0.0) -> tuple[list[Chunk], int, bool]:
        """Text after offset ``cursor`` as ``(text, at)`` chunks, waiting up to ``timeout`` for
        some; returns ``(chunks, new_cursor, ended)``, ``ended`` once closed and fully read."""
        with self._cond:
            if timeout != 0.0:
                self._cond.wait_for(lambda: self._size > cursor or self._closed, timeout)
            chunks: list[Chunk] = []
            if self._size > cursor:
                first = max(0, bisect.bisect_right(self._starts, cursor) - 1)
                for index in range(first, len(self._texts)):
                    text = self._texts[index][max(0, cursor - self._starts[index]) :]
                    if text:
                        chunks.append((text, self._times[index]))
            return chunks, self._size, self._closed and self._size <= cursor

    def text(self) -> str:
        with self._cond:
            return "".join(self._texts)

    def tail(self, max_lines: int = 40, max_chars: int = 8000) -> str:
        """The last lines of the console, bounded in lines and characters."""
        lines = split_lines(self.text())[-max_lines:]
        text = "\n".join(lines)
        return text[-max_chars:]


class Console:
    """One VM's serial console on a connected socket (see the module docstring)."""

    def __init__(
        self,
        sock: socket.socket,
        console_log: ConsoleLog,
        *,
        origin: float,
        name: str = "vm",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sock = sock
        self._log = console_log
        self._origin = origin
        self._clock = clock
        self.name = name
        self.transcript = Transcript()
        self._stop = threading.Event()
        self._child = pexpect.fdpexpect.fdspawn(sock.fileno(), timeout=None, use_poll=True)
        self._thread = threading.Thread(target=self._drain, name=f"console-{name}", daemon=True)
        self._expect_cursor = 0
        self._expect_buffer = ""
        self._closed = False
        self.bytes_read = 0
        self.logger = log.getChild(name)

    def start(self) -> None:
        self._thread.start()

    def now(self) -> float:
        """Seconds since QEMU's launch, the time base of every console record."""
        return self._clock() - self._origin

    @property
    def eof(self) -> bool:
        """True once QEMU closed the console (it exited) and every byte has been read."""
        return self.transcript.closed

    def _drain(self) -> None:
        decoder = _decoder()
        try:
            while True:
                try:
                    data = self._child.read_nonblocking(READ_SIZE, timeout=_POLL_INTERVAL)
                except pexpect.TIMEOUT:
                    if self._stop.is_set():
                        break
                    continue
                except pexpect.EOF:
                    break
                except OSError as exc:  # ECONNRESET: QEMU went away mid-read
                    self.logger.debug("console read ended: %s", exc)
                    break
                at = self.now()
                text = decoder.decode(data)
                self.bytes_read += len(data)
                self._log.write(data, text, at)
                self.transcript.append(text, at)
            tail = decoder.decode(b"", final=True)
            if tail:
                at = self.now()
                self._log.write(b"", tail, at)
                self.transcript.append(tail, at)
        finally:
            self.transcript.close()
            self.logger.debug("console drained: %d bytes", self.bytes_read)

    def send(self, data: bytes | str) -> None:
        """Type into the guest's console."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self._closed or self.eof:
            raise ConsoleError(f"{self.name}: console is closed; cannot send {data[:40]!r}")
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise ConsoleError(f"{self.name}: console send failed: {exc}") from exc

    def expect(self, pattern: str | re.Pattern[str], deadline: Deadline) -> re.Match[str]:
        """Wait for ``pattern`` in the console text after the previous ``expect`` match.

        Like pexpect's ``expect`` but fed by the drainer, so it can run in any thread and
        never competes with the log for bytes. Raises :class:`ConsoleError` if the console
        ends first and :class:`DeadlineExceeded` at the deadline, both with the console tail.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        wait: float | None = 0.0  # first look at what is already there
        while True:
            chunks, self._expect_cursor, ended = self.transcript.read(
                self._expect_cursor, timeout=wait
            )
            if chunks:
                self._expect_buffer += "".join(text for text, _ in chunks)
                self._expect_buffer = self._expect_buffer[-EXPECT_WINDOW:]
            match = regex.search(self._expect_buffer)
            if match is not None:
                self._expect_buffer = self._expect_buffer[match.end() :]
                return match
            wait = deadline.timeout(cap=0.5)
            if ended:
                raise ConsoleError(
                    f"{self.name}: console ended before {regex.pattern!r} appeared",
                    evidence=self.transcript.tail(),
                )
            deadline.check(
                f"{self.name}: waiting for {regex.pattern!r} on the console",
                evidence=self.transcript.tail(),
            )

    def wait_closed(self, timeout: float | None) -> bool:
        """Wait for the drainer to reach EOF; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self, timeout: float = 2.0) -> None:
        """Stop reading (after at most ``timeout`` s waiting for EOF) and close the files.

        Idempotent. Called by the machine's cleanup after QEMU has exited, so normally EOF
        has already been reached and nothing is cut short.
        """
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive() and not self.wait_closed(timeout):
            self.logger.warning("console did not reach EOF within %.1f s; stopping it", timeout)
            self._stop.set()
            self._thread.join(_POLL_INTERVAL * 5)
        self.transcript.close()
        try:
            self._sock.close()
        finally:
            self._log.close()
