"""Frame encoding and decoding, with no socket at all."""

import errno

import pytest

from guest.ipc import frames as protocol
from guest.ipc.frames import Frame, FrameDecoder, ProtocolError
from guest.statefsd import protocol as statefs_protocol


def test_roundtrip_and_header_size():
    frame = Frame(
        statefs_protocol.OP_PUT, 42, flags=protocol.FLAG_SYNC, key=b"/state/a", value=b"v"
    )
    raw = frame.encode()
    assert len(raw) == protocol.HEADER_BYTES + 8 + 1 == 29
    assert raw[:4] == b"SF\x01\x02"
    assert FrameDecoder().feed(raw) == [frame]


def test_byte_by_byte_and_several_frames_per_read():
    frames = [Frame(statefs_protocol.OP_GET, n, key=f"/state/{n}".encode()) for n in range(5)]
    stream = b"".join(frame.encode() for frame in frames)
    decoder = FrameDecoder()
    seen = []
    for byte in stream[:-7]:
        seen += decoder.feed(bytes([byte]))
    seen += decoder.feed(stream[-7:])
    assert seen == frames
    assert decoder.buffered == 0
    assert FrameDecoder().feed(stream) == frames


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda raw: b"XX" + raw[2:], errno.EPROTO),
        (lambda raw: raw[:2] + b"\x09" + raw[3:], errno.EPROTONOSUPPORT),
        (lambda raw: raw[:14] + b"\x01\x00" + raw[16:], errno.EPROTO),
        (lambda raw: raw[:10] + b"\x00\x80" + raw[12:], errno.EPROTO),
    ],
)
def test_untrustworthy_headers_are_fatal(mutate, code):
    raw = mutate(Frame(statefs_protocol.OP_GET, 1, key=b"/state/a").encode())
    with pytest.raises(ProtocolError) as info:
        FrameDecoder().feed(raw)
    assert info.value.errno == code
    assert info.value.fatal


def test_oversized_frame_is_rejected_from_its_header_alone():
    header = protocol.HEADER.pack(b"SF", 1, statefs_protocol.OP_PUT, 1, 0, 0, 10, 0, 1 << 30)
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError) as info:
        decoder.feed(header)
    assert info.value.errno == errno.EMSGSIZE
    assert decoder.buffered == protocol.HEADER_BYTES  # nothing of the payload was awaited


def test_encode_refuses_oversized_fields():
    with pytest.raises(ProtocolError):
        Frame(statefs_protocol.OP_PUT, 1, value=bytes(protocol.MAX_FRAME_VALUE_BYTES + 1)).encode()


def test_batch_roundtrip():
    ops = [("/state/a", b"1"), ("/state/b", None), ("/state/c", b"")]
    decoded = statefs_protocol.decode_batch(statefs_protocol.encode_batch(ops))
    assert decoded == [(b"/state/a", b"1"), (b"/state/b", None), (b"/state/c", b"")]


@pytest.mark.parametrize(
    "payload",
    [
        b"\x01\x00",  # truncated header
        b"\x03\x00\x01\x00\x00\x00\x00\x00a",  # unknown op
        b"\x01\x00\x05\x00\x01\x00\x00\x00ab",  # runs past the end
        b"\x02\x00\x01\x00\x01\x00\x00\x00ab",  # delete with a value
        b"\x01\x01\x01\x00\x00\x00\x00\x00a",  # flags set
    ],
)
def test_malformed_batches_are_einval_not_fatal(payload):
    with pytest.raises(ProtocolError) as info:
        statefs_protocol.decode_batch(payload)
    assert info.value.errno == errno.EINVAL
    assert not info.value.fatal
