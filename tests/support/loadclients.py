"""Load-test clients for statefsd: workers that know exactly what they may lose.

Each :class:`Worker` owns a key prefix, so its own acknowledgements are the whole truth about
those keys. It keeps, per key, the value at its last acknowledged commit point (a synced put or
delete, a batch, a SYNC) and every value written since. Another client's SYNC may commit this
worker's unsynced writes too, so after a REOPEN or a crash each key must hold its commit-point
value or one written after it, and nothing else: that is "no acknowledged write lost, nothing
invented". Reads are checked against the worker's own model as it goes (read-your-writes).
"""

from __future__ import annotations

import errno
import random
import socket
import threading
import time
from dataclasses import dataclass, field

from guest.ipc.frames import Frame
from guest.statefs import StatefsError
from guest.statefsd import protocol
from guest.statefsd.client import StatefsClient

from support.daemons import raw_connection

#: StatefsError errnos that mean "the connection or the daemon went away", not a wrong answer.
GONE = {
    errno.ECONNRESET,
    errno.EPIPE,
    errno.ECONNREFUSED,
    errno.ENOENT,
    errno.ETIMEDOUT,
    errno.EBADF,
    errno.ECONNABORTED,
}


@dataclass
class Worker:
    """One client thread's workload and its model."""

    index: int
    socket_path: str
    keys: int = 8
    model: dict[str, bytes] = field(default_factory=dict)
    floor: dict[str, bytes] = field(default_factory=dict)
    since: dict[str, set[bytes | None]] = field(default_factory=dict)
    ops: int = 0
    syncs_acked: int = 0
    latencies: list[float] = field(default_factory=list)
    error: BaseException | None = None
    gone: bool = False

    @property
    def prefix(self) -> str:
        return f"/state/load/w{self.index:02d}"

    def _write(self, key: str, value: bytes | None) -> None:
        self.since.setdefault(key, set()).add(value)
        if value is None:
            self.model.pop(key, None)
        else:
            self.model[key] = value

    def _commit(self) -> None:
        self.floor = dict(self.model)
        self.since = {}
        self.syncs_acked += 1

    def run(self, stop: threading.Event, seed: int) -> None:
        """Mixed operations until ``stop``; a daemon that goes away ends the run quietly."""
        rng = random.Random(seed)
        try:
            with StatefsClient.connect(self.socket_path, timeout=20) as client:
                while not stop.is_set():
                    self._one(client, rng)
        except StatefsError as exc:
            if exc.errno in GONE or (stop.is_set() and exc.errno == errno.EIO):
                self.gone = True
            else:
                self.error = exc
        except (OSError, AssertionError) as exc:
            self.error = exc

    def _one(self, client: StatefsClient, rng: random.Random) -> None:
        key = f"{self.prefix}/k{rng.randrange(self.keys)}"
        value = f"{self.index}:{self.ops}:".encode() + rng.randbytes(rng.randrange(0, 2000))
        roll = rng.random()
        started = time.monotonic()
        if roll < 0.3:
            self._uncertain(key, value)
            client.put(key, value)
        elif roll < 0.4:
            self._uncertain(key, value)
            client.put(key, value, sync=True)
            self._commit()
        elif roll < 0.6:
            try:
                got = client.get(key)
            except StatefsError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                assert key not in self.model, f"{key} lost before any restart"
            else:
                assert got == self.model.get(key), f"{key} read back other bytes"
        elif roll < 0.7 and key in self.model:
            sync = rng.random() < 0.5
            self._uncertain(key, None)
            client.delete(key, sync=sync)
            if sync:
                self._commit()
        elif roll < 0.8:
            batch = [
                (f"{self.prefix}/k{n}", value + bytes([n])) for n in rng.sample(range(self.keys), 3)
            ]
            for batch_key, batch_value in batch:
                self._uncertain(batch_key, batch_value)
            client.batch(batch)
            self._commit()
        elif roll < 0.9:
            client.sync()
            self._commit()
        else:
            assert client.list(self.prefix) == sorted(self.model), "listing disagrees"
        self.latencies.append(time.monotonic() - started)
        self.ops += 1

    def _uncertain(self, key: str, value: bytes | None) -> None:
        """Record a write before sending it: if the daemon dies before the answer, the write
        may or may not have happened, and both are allowed."""
        self._write(key, value)

    def violations(self, recovered: dict[str, bytes]) -> list[str]:
        """Keys whose recovered value is neither the commit-point value nor a later write."""
        problems = []
        keys = {key for key in recovered if key.startswith(self.prefix + "/")}
        keys |= set(self.floor) | set(self.since)
        for key in sorted(keys):
            got = recovered.get(key)
            if got == self.floor.get(key) or got in self.since.get(key, ()):
                continue
            problems.append(f"{key}: recovered {None if got is None else got[:16]!r}")
        return problems

    def settle(self, recovered: dict[str, bytes]) -> None:
        """After a check, what was recovered is the new committed truth."""
        mine = {k: v for k, v in recovered.items() if k.startswith(self.prefix + "/")}
        self.model = dict(mine)
        self.floor = dict(mine)
        self.since = {}


class Staller:
    """A client that sends half a frame and then nothing, holding its connection open."""

    def __init__(self, socket_path: str) -> None:
        frame = Frame(protocol.OP_PUT, 1, key=b"/state/stall", value=b"s" * 5000).encode()
        self.sock = raw_connection(socket_path)
        self.sock.sendall(frame[: len(frame) // 2])

    def close(self) -> None:
        self.sock.close()


class Disconnector:
    """Sends requests and hangs up mid-way: a BATCH cut short (must never apply) and a whole
    BATCH whose answer it never reads (must apply all or nothing)."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.rounds = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            n = self.rounds
            cut = protocol.encode_batch([(f"/state/load/half/cut{n}/{i}", b"x") for i in range(3)])
            whole = protocol.encode_batch(
                [(f"/state/load/half/whole{n}/{i}", b"y") for i in range(3)]
            )
            try:
                with raw_connection(self.socket_path) as sock:
                    data = Frame(protocol.OP_BATCH, n, value=cut).encode()
                    sock.sendall(data[: len(data) - 1 - n % 7])
                with raw_connection(self.socket_path) as sock:
                    sock.sendall(Frame(protocol.OP_BATCH, n, value=whole).encode())
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                return  # the daemon went away
            self.rounds += 1
            time.sleep(0.01)

    def violations(self, recovered: dict[str, bytes]) -> list[str]:
        problems = []
        for n in range(self.rounds + 1):
            if any(k.startswith(f"/state/load/half/cut{n}/") for k in recovered):
                problems.append(f"cut-short batch {n} was applied")
            present = sum(f"/state/load/half/whole{n}/{i}" in recovered for i in range(3))
            if present not in (0, 3):
                problems.append(f"batch {n} half-applied: {present} of 3 keys")
        return problems
