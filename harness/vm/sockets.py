"""The two unix sockets QEMU connects back to (serial console, QMP), in a private directory.

The harness listens and QEMU connects (``-chardev socket,...,server=off``), so the harness
owns both ends' lifetimes: nothing QEMU could leave behind, and a QEMU that dies or stalls
before connecting is noticed at once (:class:`StartupProblem`) rather than at a timeout.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from harness.deadline import Deadline
from harness.process import private_socket_dir
from harness.vm.qemu_args import Endpoints


class StartupProblem(Exception):
    """QEMU died or stalled while connecting; the Machine turns it into LaunchError with its
    stderr."""


class Listeners:
    """A private socket directory with the serial and QMP listeners bound in it."""

    def __init__(self, name: str) -> None:
        self.directory: Path = private_socket_dir(name)
        self.endpoints = Endpoints(
            serial_socket=self.directory / "serial.sock", qmp_socket=self.directory / "qmp.sock"
        )
        self._sockets: list[socket.socket] = []
        for path in (self.endpoints.serial_socket, self.endpoints.qmp_socket):
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sockets.append(listener)
            listener.bind(os.fspath(path))
            listener.listen(1)

    def accept(
        self, which: int, what: str, deadline: Deadline, exit_code: Callable[[], int | None]
    ) -> socket.socket:
        """Wait for QEMU to connect listener ``which`` (0 serial, 1 QMP); ``exit_code``
        polls QEMU so its death ends the wait at once."""
        listener = self._sockets[which]
        while True:
            code = exit_code()
            if code is not None:
                raise StartupProblem(f"QEMU exited with code {code} before connecting its {what}")
            if deadline.expired:
                raise StartupProblem(
                    f"QEMU did not connect its {what} within {deadline.seconds:g} s"
                )
            ready, _, _ = select.select([listener], [], [], deadline.timeout(cap=0.05))
            if ready:
                conn, _ = listener.accept()
                return conn

    def close(self) -> None:
        """Stop listening (both connections are made, or the launch failed)."""
        for listener in self._sockets:
            listener.close()
        self._sockets = []

    def remove(self) -> None:
        """Close and delete the directory with its socket files (``Machine``'s clean-up)."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)
