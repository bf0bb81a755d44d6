"""Client library for statefsd, used by every guest service, the selftest and host tests.

Errors come back as :class:`~guest.statefs.errors.StatefsError` with the server's errno, the
same exception the store itself raises, so code written against a local :class:`Store` and code
talking to statefsd handle failures the same way.
"""

from __future__ import annotations

import errno
import json
import socket
import time

from guest.statefs.errors import StatefsError
from guest.statefsd import protocol
from guest.statefsd.protocol import Frame, FrameDecoder, ProtocolError

DEFAULT_SOCKET = "/run/statefsd.sock"


class StatefsClient:
    """A blocking connection to statefsd. Use as a context manager, or call :meth:`close`."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, *, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder()
        self._next_id = 1

    @classmethod
    def connect(
        cls, socket_path: str = DEFAULT_SOCKET, *, wait: float = 0.0, timeout: float = 10.0
    ) -> StatefsClient:
        """Connect, retrying for up to ``wait`` seconds while the daemon starts."""
        client = cls(socket_path, timeout=timeout)
        deadline = time.monotonic() + wait
        while True:
            try:
                client._open()
                return client
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if time.monotonic() >= deadline:
                    raise StatefsError(
                        exc.errno or errno.ECONNREFUSED,
                        f"statefsd not reachable at {socket_path}: {exc.strerror}",
                    ) from exc
                time.sleep(0.02)

    def _open(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._decoder = FrameDecoder()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> StatefsClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------------

    def request(self, op: int, key: bytes = b"", value: bytes = b"", flags: int = 0) -> Frame:
        """Send one request and wait for its reply; raise StatefsError on an error status."""
        if self._sock is None:
            self._open()
        request_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
        frame = Frame(op, request_id, flags=flags, key=key, value=value)
        try:
            self._sock.sendall(frame.encode())
            reply = self._receive()
        except ProtocolError as exc:
            self.close()
            raise StatefsError(exc.errno, f"bad reply from statefsd: {exc}") from exc
        except TimeoutError as exc:
            self.close()
            raise StatefsError(errno.ETIMEDOUT, f"statefsd did not answer {frame.op_name}") from exc
        except OSError as exc:
            self.close()
            raise StatefsError(exc.errno or errno.EIO, f"statefsd connection: {exc}") from exc
        if reply.request_id != request_id or reply.op != op:
            self.close()
            raise StatefsError(errno.EPROTO, "reply does not match the request")
        if reply.status:
            raise StatefsError(reply.status, reply.value.decode("utf-8", "replace"))
        return reply

    def _receive(self) -> Frame:
        while True:
            data = self._sock.recv(256 * 1024)
            if not data:
                raise OSError(errno.ECONNRESET, "statefsd closed the connection")
            frames = self._decoder.feed(data)
            if frames:
                if len(frames) > 1 or self._decoder.buffered:
                    raise ProtocolError(errno.EPROTO, "unexpected extra reply data")
                return frames[0]

    @staticmethod
    def _key(key: str | bytes) -> bytes:
        return key.encode("utf-8", "surrogateescape") if isinstance(key, str) else bytes(key)

    def hello(self) -> dict:
        return json.loads(self.request(protocol.OP_HELLO).value)

    def put(self, key: str | bytes, value: bytes, *, sync: bool = False) -> None:
        flags = protocol.FLAG_SYNC if sync else 0
        self.request(protocol.OP_PUT, self._key(key), bytes(value), flags)

    def get(self, key: str | bytes) -> bytes:
        return self.request(protocol.OP_GET, self._key(key)).value

    def delete(self, key: str | bytes, *, sync: bool = False) -> None:
        flags = protocol.FLAG_SYNC if sync else 0
        self.request(protocol.OP_DELETE, self._key(key), b"", flags)

    def list(self, prefix: str | bytes = "/state") -> list[str]:
        keys: list[str] = []
        cursor = b""
        while True:
            reply = self.request(protocol.OP_LIST, self._key(prefix), cursor)
            page = reply.value.decode("utf-8").split("\n") if reply.value else []
            keys += page
            if not reply.flags & protocol.FLAG_MORE or not page:
                return keys
            cursor = page[-1].encode("utf-8")

    def sync(self) -> None:
        self.request(protocol.OP_SYNC)

    def batch(self, operations: list[tuple[str, bytes | None]]) -> None:
        """Apply puts and deletes (value ``None``) all or nothing, durably, as one commit."""
        self.request(protocol.OP_BATCH, value=protocol.encode_batch(operations))

    def reopen(self) -> dict:
        """Make statefsd drop its state, re-open the device and replay; returns its stats."""
        return json.loads(self.request(protocol.OP_REOPEN).value)

    def stats(self) -> dict:
        return json.loads(self.request(protocol.OP_STATS).value)

    def fsck(self) -> dict:
        return json.loads(self.request(protocol.OP_FSCK).value)
