"""Client library for statefsd, used by every guest service, the selftest and host tests."""

from __future__ import annotations

from guest.ipc.client import FrameClient
from guest.statefsd import protocol

DEFAULT_SOCKET = "/run/statefsd/statefsd.sock"


#: Puts ``(key, value)`` and deletes ``(key, None)`` (named here: the class has a ``list``).
BatchOperations = list[tuple[str, bytes | None]]


class StatefsClient(FrameClient):
    """A connection to statefsd: the store's API over the socket, plus REOPEN and STATS."""

    service = "statefsd"

    def __init__(self, socket_path: str = DEFAULT_SOCKET, *, timeout: float = 10.0) -> None:
        super().__init__(socket_path, timeout=timeout)

    @staticmethod
    def _key(key: str | bytes) -> bytes:
        return key.encode("utf-8", "surrogateescape") if isinstance(key, str) else bytes(key)

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

    def batch(self, operations: BatchOperations) -> None:
        """Apply puts and deletes (value ``None``) all or nothing, durably, as one commit."""
        self.request(protocol.OP_BATCH, value=protocol.encode_batch(operations))

    def reopen(self) -> dict:
        """Make statefsd drop its state, re-open the device and replay; returns its stats."""
        return self.request_json(protocol.OP_REOPEN)

    def stats(self) -> dict:
        return self.request_json(protocol.OP_STATS)

    def fsck(self) -> dict:
        return self.request_json(protocol.OP_FSCK)
