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
from harness.vm.machine import Machine, MachineState

ESCAPE = b"\x1d"  # Ctrl-]
ESCAPE_NAME = "Ctrl-]"
#: busybox's line editor asks the terminal where the cursor is (Device Status Report) before
#: each prompt. The answer would arrive on our stdin, not the guest's, and a terminal that is
#: not the guest's shows the query as a stray ``ESC[6n``: it is dropped from what is shown
#: (``uart.log`` keeps every byte).
CURSOR_QUERY = "\x1b[6n"

#: How the console ended, by the reason of QEMU's SHUTDOWN event.
_SHUTDOWN_WORDS = {
    "guest-shutdown": "poweroff",
    "guest-reset": "the guest rebooted (QEMU runs with -no-reboot)",
    "guest-panic": "the guest panicked",
    "host-qmp-quit": "QEMU was quit over QMP (by another client)",
    "host-signal": "QEMU was stopped by a signal",
}


def shown(text: str) -> str:
    """What the terminal shows of console ``text``: everything but the cursor query."""
    return text.replace(CURSOR_QUERY, "")


def ended_how(machine: Machine) -> str:
    """Why the console ended: the guest's power-off, or what else stopped QEMU."""
    events = machine.qmp.events if machine.state is MachineState.RUNNING else []
    for event in reversed(events):
        if event.get("event") == "SHUTDOWN":
            reason = str(event.get("data", {}).get("reason"))
            return _SHUTDOWN_WORDS.get(reason, f"QEMU shut down ({reason})")
    return "QEMU exited"


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
    """Mirror the console to ``stdout`` and keys to the guest until the console ends
    (``"poweroff"``, or what else stopped QEMU: :func:`ended_how`), Ctrl-] (``"escape"``) or
    the deadline (``"timeout"``)."""
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
                stdout.write(shown(text).encode("utf-8", "replace"))
                if on_text is not None:
                    on_text(text, at)
            stdout.flush()
            return ended

        while True:
            ended = pump()
            if ended:
                return ended_how(machine)
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
