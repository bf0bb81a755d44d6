"""statefsd's operations on top of the IPC frames (``guest.ipc.frames``). Pure, no I/O.

``docs/storage/ipc-protocol.md`` documents each operation's key, value and reply.
"""

import errno

from guest.ipc.frames import (  # noqa: F401 - re-exported: statefsd's protocol in one import
    FLAG_MORE,
    FLAG_SYNC,
    MAX_FRAME_VALUE_BYTES,
    OP_HELLO,
    ProtocolError,
    name_ops,
)
from guest.statefs.layout import JOURNAL_DELETE, JOURNAL_PUT, MAX_VALUE_BYTES, OP_HEADER, encode_op

OP_PUT = 2  # key, value [FLAG_SYNC]
OP_GET = 3  # key -> value
OP_DELETE = 4  # key [FLAG_SYNC]
OP_LIST = 5  # key = prefix, value = cursor (last key seen, or empty) -> "\n"-joined keys
OP_SYNC = 6  # commit everything put so far, by every client
OP_BATCH = 7  # value = encoded operations, applied all-or-nothing and synced as one group
OP_REOPEN = 8  # drop in-memory state, close and re-open the device, replay -> stats (JSON)
OP_STATS = 9  # -> stats (JSON)
OP_FSCK = 10  # -> fsck report (JSON)

name_ops(
    {
        OP_PUT: "PUT",
        OP_GET: "GET",
        OP_DELETE: "DELETE",
        OP_LIST: "LIST",
        OP_SYNC: "SYNC",
        OP_BATCH: "BATCH",
        OP_REOPEN: "REOPEN",
        OP_STATS: "STATS",
        OP_FSCK: "FSCK",
    }
)

#: OP_BATCH's value is a journal payload: its operation codes are the journal's, not the
#: request codes above.
BATCH_PUT = JOURNAL_PUT
BATCH_DELETE = JOURNAL_DELETE


def encode_batch(operations: list[tuple[str, bytes | None]]) -> bytes:
    """Encode ``[(key, value)]`` (``value=None`` deletes) for OP_BATCH."""
    parts = []
    for key, value in operations:
        encoded = key.encode("utf-8", "surrogateescape")  # the server rejects non-UTF-8: EINVAL
        if value is None:
            parts.append(encode_op(BATCH_DELETE, encoded))
        else:
            parts.append(encode_op(BATCH_PUT, encoded, bytes(value)))
    return b"".join(parts)


def decode_batch(payload: bytes) -> list[tuple[bytes, bytes | None]]:
    """Decode an OP_BATCH value; raises ProtocolError (EINVAL, not fatal) if malformed."""
    operations = []
    pos = 0
    while pos < len(payload):
        if pos + OP_HEADER.size > len(payload):
            raise ProtocolError(errno.EINVAL, "truncated batch operation header", fatal=False)
        op, flags, key_len, value_len = OP_HEADER.unpack_from(payload, pos)
        pos += OP_HEADER.size
        if flags or op not in (BATCH_PUT, BATCH_DELETE) or (op == BATCH_DELETE and value_len):
            raise ProtocolError(errno.EINVAL, f"bad batch operation {op}", fatal=False)
        if value_len > MAX_VALUE_BYTES or pos + key_len + value_len > len(payload):
            raise ProtocolError(errno.EINVAL, "batch operation runs past the payload", fatal=False)
        key = payload[pos : pos + key_len]
        pos += key_len
        value = payload[pos : pos + value_len] if op == BATCH_PUT else None
        pos += value_len
        operations.append((key, value))
    return operations
