"""Fuzz targets for coverage-guided campaigns (atheris / libFuzzer): bytes in, checks inside.

Each target takes the fuzzer's raw bytes, builds an input from them and checks the same
properties as the Hypothesis targets in tests/fuzz: only the store's own errors, the replay
bounds, nothing invented. A violated property raises (AssertionError or the unexpected
exception itself), which libFuzzer reports as a crash and saves as a reproducer. The entry
points are ``tests/fuzz/atheris_*.py``; ``docs/testing/robustness.md`` has the commands.
"""

from __future__ import annotations

import errno
import functools
import struct

from guest.ipc.frames import Frame, FrameDecoder, ProtocolError
from guest.statefs import MemoryBlockDevice, StatefsError, Store, normalize_key
from guest.statefs.crc import crc32c
from guest.statefs.layout import CRC_COVERS_FROM, RECORD_HEADER, RECORD_MAGIC, round_up
from guest.statefs.paths import is_normal_key, normalize_prefix
from guest.statefsd import protocol
from guest.statefsd.server import StatefsServer

from support.journals import SharedDisk, journals
from support.replaycheck import check_bounds, check_written, open_image

SS = 512


@functools.cache
def _formatted() -> tuple[bytes, object]:
    dev = MemoryBlockDevice(SS, 1100)
    store = Store.format(dev, volume_id=0xA7, epoch=3)
    sb = store.superblock
    store.close()
    return bytes(dev.data), sb


def replay(data: bytes) -> None:
    """First byte picks the mode: noise behind a valid superblock, damage to a real journal,
    or records forged with valid CRCs from the rest of the bytes."""
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    history = None
    if mode == 0:
        base, sb = _formatted()
        image = bytearray(base)
        start = sb.region_start(sb.active_region) * SS
        image[start : start + len(body)] = body[: sb.region_bytes]
    elif mode == 1:
        journal = journals()[body[0] % len(journals())] if body else journals()[0]
        image = bytearray(journal.image)
        history = journal.history
        for pos in range(1, len(body) - 3, 4):
            offset = int.from_bytes(body[pos : pos + 3], "little") % len(image)
            image[offset] ^= body[pos + 3] or 1
    else:
        base, sb = _formatted()
        image = bytearray(base)
        offset = sb.region_start(sb.active_region) * SS
        seq = 1
        for chunk in body.split(b"\xff\xfe")[:8]:
            ops = chunk[4:]
            header = bytearray(
                RECORD_HEADER.pack(
                    RECORD_MAGIC,
                    0,
                    sb.epoch,
                    seq,
                    1 + (chunk[:1] == b"\x02"),
                    0,
                    0,
                    chunk[1] if len(chunk) > 1 else 1,
                    len(ops),
                )
            )
            crc = crc32c(ops, crc32c(bytes(header[CRC_COVERS_FROM:]), sb.salt))
            struct.pack_into("<I", header, 4, crc)
            record = bytes(header) + ops
            record += bytes(round_up(len(record), SS) - len(record))
            if offset + len(record) > len(image):
                break
            image[offset : offset + len(record)] = record
            offset += len(record)
            seq += 1
    image = bytes(image)
    opened = open_image(image, SS)
    check_bounds(opened, len(image), SS)
    if opened.state is not None:
        for key in opened.state:
            assert is_normal_key(key), key
        if history is not None:
            check_written(opened.state, history)


def frames(data: bytes) -> None:
    """The bytes, fed to a FrameDecoder in pieces sized by the bytes themselves, and decoded
    as a batch."""
    decoder = FrameDecoder()
    pos = 0
    while pos < len(data):
        size = data[pos] + 1
        try:
            decoder.feed(data[pos : pos + size])
        except ProtocolError as exc:
            assert exc.fatal and exc.errno in errno.errorcode
            break
        pos += size
    try:
        protocol.decode_batch(data)
    except ProtocolError as exc:
        assert exc.errno == errno.EINVAL and not exc.fatal


def keys(data: bytes) -> None:
    """normalize_key / normalize_prefix / is_normal_key on the bytes and their decodings."""
    text = data.decode("utf-8", "surrogateescape")
    for key in (data, text, data.decode("latin-1")):
        for normalize in (normalize_key, normalize_prefix):
            try:
                normal = normalize(key)
            except StatefsError as exc:
                assert exc.errno in (errno.EINVAL, errno.ENAMETOOLONG)
                continue
            assert normalize(normal) == normal
        if isinstance(key, str):
            try:
                normal = normalize_key(key)
            except StatefsError:
                normal = None
            assert is_normal_key(key) == (normal == key)


def dispatch(data: bytes) -> None:
    """A request sequence carved from the bytes, dispatched to a fresh statefsd; every
    request answered with its own op and id and a known errno, no internal error."""
    server = StatefsServer(SharedDisk(SS, 1100).open, "/nonexistent/unused.sock")
    server.open_store()
    reported: list[str] = []
    import guest.ipc.server as ipc_server

    original = ipc_server.emit
    ipc_server.emit = reported.append
    try:
        for chunk in data.split(b"\x00\x00")[:20]:
            if len(chunk) < 3:
                continue
            key_len = chunk[2] % (len(chunk) - 2)
            request = Frame(
                chunk[0] % 12,
                len(reported),
                flags=chunk[1] % 4,
                key=chunk[3 : 3 + key_len],
                value=chunk[3 + key_len :],
            )
            reply = server.frames.dispatch(request)
            assert (reply.op, reply.request_id) == (request.op, request.request_id)
            assert reply.status == 0 or reply.status in errno.errorcode
            assert not reported, reported
    finally:
        ipc_server.emit = original
        server.close_store()


TARGETS = {"replay": replay, "frames": frames, "keys": keys, "dispatch": dispatch}
