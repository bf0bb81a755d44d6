"""An interactive serial console on the developer's terminal (``python -m harness boot``).

The terminal is put in raw mode so every key (Ctrl-C included) goes to the guest; **Ctrl-]**
(0x1d, the telnet escape) detaches and powers the VM off. Output comes from the console
drainer's transcript, so ``uart.log`` keeps everything exactly as in a non-interactive run.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from typing import BinaryIO, TextIO

from harness.deadline import Deadline
from harness.vm.machine import Machine

ESCAPE = b"\x1d"  # Ctrl-]
ESCAPE_NAME = "Ctrl-]"


@contextlib.contextmanager
def raw_terminal(stream: TextIO) -> Iterator[bool]:
    """Raw mode on ``stream`` if it is a terminal; yields whether it is one."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        yield False
        return
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def attach(
    machine: Machine,
    *,
    stdin: TextIO | None = None,
    stdout: BinaryIO | None = None,
    deadline: Deadline | None = None,
    on_text: Callable[[str, float], None] | None = None,
    forward_input: bool = True,
) -> str:
    """Mirror the console to ``stdout`` and keys to the guest until the guest powers off
    (``"poweroff"``), Ctrl-] (``"escape"``) or the deadline (``"timeout"``)."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout.buffer
    deadline = deadline or Deadline.never()
    transcript = machine.console.transcript
    cursor = 0
    with raw_terminal(stdin) as is_tty:
        fd: int | None = None
        if forward_input:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                fd = stdin.fileno()

        def pump() -> bool:
            nonlocal cursor
            chunks, cursor, ended = transcript.read(cursor, timeout=0.0)
            for text, at in chunks:
                stdout.write(text.encode("utf-8", "replace"))
                if on_text is not None:
                    on_text(text, at)
            stdout.flush()
            return ended

        while True:
            ended = pump()
            if ended:
                return "poweroff"
            if deadline.expired:
                return "timeout"
            ready, _, _ = select.select([fd] if fd is not None else [], [], [], 0.05)
            if not ready:
                continue
            assert fd is not None
            data = os.read(fd, 1024)
            if not data:
                fd = None  # stdin closed (a pipe): keep showing the console
                continue
            if ESCAPE in data:
                before = data.split(ESCAPE, 1)[0]
                if before:
                    machine.console.send(before)
                pump()  # what arrived while we read the key
                return "escape"
            if not is_tty:
                data = data.replace(b"\n", b"\r")  # a pipe sends NL; a serial line sends CR
            machine.console.send(data)
