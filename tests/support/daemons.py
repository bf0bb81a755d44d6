"""statefsd for robustness tests: in a thread on any device opener, or as a real process.

``support.statefsd_thread.ServerThread`` serves a file image; the robustness tests also need a
memory disk that survives REOPEN (fast fuzzing), a faulty device (fault injection), and a real
daemon process (resident memory, SIGKILL, restart). Raw sockets for misbehaving clients are
here too.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from guest.statefs import StoreConfig
from guest.statefs.blockdev import BlockDevice
from guest.statefsd.client import StatefsClient
from guest.statefsd.policy import Policy
from guest.statefsd.server import StatefsServer

REPO = Path(__file__).resolve().parents[2]


class ThreadedStatefsd:
    """A StatefsServer serving from a daemon thread, on devices from ``open_device``."""

    def __init__(
        self,
        open_device: Callable[[], BlockDevice],
        socket_path: str | os.PathLike[str],
        config: StoreConfig | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.socket_path = str(socket_path)
        self.server = StatefsServer(open_device, self.socket_path, config=config, policy=policy)
        self.formatted = self.server.open_store()
        self.server.listen()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def client(self, **kwargs: float) -> StatefsClient:
        return StatefsClient.connect(self.socket_path, **kwargs)

    def stop(self) -> None:
        self.server.request_stop()
        self.thread.join(timeout=10)
        if self.thread.is_alive():
            raise RuntimeError("statefsd thread did not stop within 10 s")


class StatefsdProcess:
    """``python -m guest.statefsd`` on an image file, started and waited for ``ready``."""

    def __init__(self, device: Path, socket_path: Path, *, timeout: float = 20.0) -> None:
        self.device = device
        self.socket_path = socket_path
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "guest.statefsd",
                "--device",
                str(device),
                "--socket",
                str(socket_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if line == "statefsd: ready\n":
                return
        self.kill()
        raise RuntimeError(f"statefsd did not become ready: {self.lines}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status_kib(self, field: str) -> int:
        """A memory field of /proc/PID/status (VmRSS, VmHWM) in KiB."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def client(self, **kwargs: float) -> StatefsClient:
        return StatefsClient.connect(str(self.socket_path), **kwargs)

    def stop(self) -> int:
        """SIGTERM, as init does; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.lines += self.proc.stdout.read().splitlines()
        return code

    def kill(self) -> None:
        """SIGKILL: no chance to sync or close anything."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=20)
        self.proc.stdout.close()


def raw_connection(path: str | os.PathLike[str], timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def read_until(sock: socket.socket, done: Callable[[bytes], bool], timeout: float) -> bytes:
    """Read until ``done(received)`` or EOF; raise TimeoutError after ``timeout`` seconds
    (a daemon that neither answers nor closes is hung)."""
    received = bytearray()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        while not done(bytes(received)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer and no close after {timeout} s")
            if not selector.select(left):
                continue
            try:
                chunk = sock.recv(1 << 16)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            received += chunk
    return bytes(received)
