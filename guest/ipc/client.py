"""Blocking client for the frame servers (statefsd, keystored, updated).

Errors come back as :class:`~guest.statefs.errors.StatefsError` carrying the server's errno:
the same exception the store itself raises, so code handles a local store and a remote one
alike. A refusal by the access policy is :class:`AccessDenied`, a StatefsError with ``EACCES``.
"""

from __future__ import annotations

import errno
import json
import socket
import time

from guest.ipc import frames
from guest.ipc.frames import Frame, FrameDecoder, ProtocolError
from guest.statefs.errors import StatefsError

#: ``typing`` is not imported at run time (start-up cost); a type checker takes this branch.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Self


class AccessDenied(StatefsError):
    """The service's access policy refused the request (errno ``EACCES``); nothing changed."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EACCES, message)


class FrameClient:
    """A blocking request/reply connection to a frame server; a context manager."""

    service = "service"

    def __init__(self, socket_path: str, *, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder()
        self._next_id = 1

    @classmethod
    def connect(cls, socket_path: str, *, wait: float = 0.0, timeout: float = 10.0) -> Self:
        """Connect, retrying for up to ``wait`` seconds while the server starts."""
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
                        f"{cls.service} not reachable at {socket_path}: {exc.strerror}",
                    ) from exc
                time.sleep(0.02)

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._decoder = FrameDecoder()
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------------

    def request(self, op: int, key: bytes = b"", value: bytes = b"", flags: int = 0) -> Frame:
        """Send one request and wait for its reply; raise StatefsError on an error status."""
        sock = self._sock
        if sock is None:
            try:
                sock = self._open()
            except OSError as exc:
                raise StatefsError(
                    exc.errno or errno.ECONNREFUSED,
                    f"{self.service} not reachable at {self.socket_path}: {exc.strerror or exc}",
                ) from exc
        request_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
        frame = Frame(op, request_id, flags=flags, key=key, value=value)
        try:
            sock.sendall(frame.encode())
            reply = self._receive(sock)
        except ProtocolError as exc:
            self.close()
            raise StatefsError(exc.errno, f"bad reply from {self.service}: {exc}") from exc
        except TimeoutError as exc:
            self.close()
            raise StatefsError(
                errno.ETIMEDOUT, f"{self.service} did not answer {frame.op_name}"
            ) from exc
        except OSError as exc:
            self.close()
            raise StatefsError(exc.errno or errno.EIO, f"{self.service} connection: {exc}") from exc
        if reply.request_id != request_id or reply.op != op:
            self.close()
            raise StatefsError(errno.EPROTO, "reply does not match the request")
        if reply.status == errno.EACCES:
            raise AccessDenied(reply.value.decode("utf-8", "replace"))
        if reply.status:
            raise StatefsError(reply.status, reply.value.decode("utf-8", "replace"))
        return reply

    def request_json(self, op: int, key: bytes = b"", value: bytes = b"") -> dict:
        """A request whose reply value is a JSON object."""
        return json.loads(self.request(op, key, value).value)

    def hello(self) -> dict:
        return self.request_json(frames.OP_HELLO)

    def _receive(self, sock: socket.socket) -> Frame:
        while True:
            data = sock.recv(256 * 1024)
            if not data:
                raise OSError(errno.ECONNRESET, f"{self.service} closed the connection")
            frames = self._decoder.feed(data)
            if frames:
                if len(frames) > 1 or self._decoder.buffered:
                    raise ProtocolError(errno.EPROTO, "unexpected extra reply data")
                return frames[0]
