"""Wire format of the guest's local IPC: compact, versioned byte frames. Pure, no I/O.

Every frame, request or response, is a 20-byte header followed by a key and a value::

    offset size field        meaning
    0      2    magic        b"SF"
    2      1    version      PROTOCOL_VERSION (1)
    3      1    op           operation code (the response echoes the request's)
    4      4    request_id   chosen by the client, echoed by the server
    8      2    status       0 in requests; 0 = ok or an errno in responses
    10     2    flags        FLAG_SYNC on writes, FLAG_MORE on a truncated listing
    12     2    key_bytes    <= MAX_FRAME_KEY_BYTES
    14     2    reserved     zero
    16     4    value_bytes  <= MAX_FRAME_VALUE_BYTES

All integers little-endian. An error response carries the errno in ``status`` and a UTF-8
message as its value. ``docs/storage/ipc-protocol.md`` documents the header and every
service's operations.

The decoder is incremental (:class:`FrameDecoder`): it takes bytes as they arrive and yields
whole frames, and it rejects a bad header before buffering its payload, so a hostile peer
cannot make it hold more than one maximal frame.
"""

import errno
import struct

from guest.statefs.paths import MAX_RAW_KEY_BYTES
from guest.values import Value

MAGIC = b"SF"
PROTOCOL_VERSION = 1

HEADER = struct.Struct("<2sBBIHHHHI")
HEADER_BYTES = HEADER.size  # 20

#: Longest key field (a raw key before normalization may be up to PATH_MAX).
MAX_FRAME_KEY_BYTES = MAX_RAW_KEY_BYTES
#: Longest value field: a batch of operations or a listing page, never more than a commit group.
MAX_FRAME_VALUE_BYTES = 1 << 20
MAX_FRAME_BYTES = HEADER_BYTES + MAX_FRAME_KEY_BYTES + MAX_FRAME_VALUE_BYTES

FLAG_SYNC = 0x0001
FLAG_MORE = 0x0002
KNOWN_FLAGS = FLAG_SYNC | FLAG_MORE

#: Operation codes every service answers.
OP_HELLO = 1


class ProtocolError(Exception):
    """A frame that cannot be decoded. ``errno`` goes into the error reply; ``fatal`` means the
    byte stream can no longer be trusted and the connection must be closed."""

    def __init__(self, code: int, message: str, *, fatal: bool = True) -> None:
        super().__init__(message)
        self.errno = code
        self.fatal = fatal


class Frame(Value):
    """One request or response: header fields plus key and value bytes."""

    __slots__ = ("flags", "key", "op", "request_id", "status", "value")
    op: int
    request_id: int
    status: int
    flags: int
    key: bytes
    value: bytes

    def __init__(
        self,
        op: int,
        request_id: int,
        status: int = 0,
        flags: int = 0,
        key: bytes = b"",
        value: bytes = b"",
    ) -> None:
        self._set(op=op, request_id=request_id, status=status, flags=flags, key=key, value=value)

    def encode(self) -> bytes:
        if len(self.key) > MAX_FRAME_KEY_BYTES or len(self.value) > MAX_FRAME_VALUE_BYTES:
            raise ProtocolError(errno.EMSGSIZE, "frame field over its limit", fatal=False)
        header = HEADER.pack(
            MAGIC,
            PROTOCOL_VERSION,
            self.op,
            self.request_id & 0xFFFFFFFF,
            self.status,
            self.flags,
            len(self.key),
            0,
            len(self.value),
        )
        return header + self.key + self.value

    @property
    def op_name(self) -> str:
        return OP_NAMES.get(self.op, f"op{self.op}")


#: Names of operation codes for messages; services register theirs with :func:`name_ops`.
OP_NAMES: dict[int, str] = {OP_HELLO: "HELLO"}


def name_ops(names: dict[int, str]) -> None:
    OP_NAMES.update(names)


def error_frame(request: Frame, code: int, message: str) -> Frame:
    text = message.encode("utf-8", "replace")[:4096]
    return Frame(request.op, request.request_id, status=code, value=text)


class FrameDecoder:
    """Incremental decoder: :meth:`feed` bytes, get whole frames back.

    Raises :class:`ProtocolError` on a header it cannot trust (bad magic, unsupported
    version, non-zero reserved field, a length over its limit); the caller replies with its
    errno if it can and closes the connection.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need: tuple[int, ...] | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while True:
            if self._need is None:
                if len(self._buf) < HEADER_BYTES:
                    break
                self._need = self._check_header(bytes(self._buf[:HEADER_BYTES]))
            _, _, op, request_id, status, flags, key_len, _, value_len = self._need
            total = HEADER_BYTES + key_len + value_len
            if len(self._buf) < total:
                break
            key = bytes(self._buf[HEADER_BYTES : HEADER_BYTES + key_len])
            value = bytes(self._buf[HEADER_BYTES + key_len : total])
            del self._buf[:total]
            self._need = None
            frames.append(Frame(op, request_id, status, flags, key, value))
        return frames

    @staticmethod
    def _check_header(raw: bytes) -> tuple[int, ...]:
        fields = HEADER.unpack(raw)
        magic, version, _, _, _, flags, key_len, reserved, value_len = fields
        if magic != MAGIC:
            raise ProtocolError(errno.EPROTO, f"bad frame magic {magic!r}")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                errno.EPROTONOSUPPORT,
                f"protocol version {version} not supported (server speaks {PROTOCOL_VERSION})",
            )
        if reserved or flags & ~KNOWN_FLAGS:
            raise ProtocolError(errno.EPROTO, "reserved header bits set")
        if key_len > MAX_FRAME_KEY_BYTES or value_len > MAX_FRAME_VALUE_BYTES:
            raise ProtocolError(
                errno.EMSGSIZE,
                f"frame of key {key_len} / value {value_len} bytes exceeds "
                f"{MAX_FRAME_KEY_BYTES} / {MAX_FRAME_VALUE_BYTES}",
            )
        return fields
