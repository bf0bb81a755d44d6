"""The wire decoders with arbitrary bytes: FrameDecoder.feed in arbitrary chunks, decode_batch.

The decoder is the daemon's first contact with a hostile peer. Whatever arrives, in whatever
pieces, it must return whole frames or raise :class:`ProtocolError` (never another exception),
give the same frames however the bytes are split, and never hold more than one frame's worth
of bytes. ``decode_batch`` must return operations or a non-fatal EINVAL ProtocolError, and
round-trip what ``encode_batch`` wrote.
"""

from __future__ import annotations

import errno
import itertools

from hypothesis import given
from hypothesis import strategies as st

from guest.ipc.frames import (
    HEADER,
    HEADER_BYTES,
    MAGIC,
    MAX_FRAME_BYTES,
    MAX_FRAME_KEY_BYTES,
    MAX_FRAME_VALUE_BYTES,
    PROTOCOL_VERSION,
    Frame,
    FrameDecoder,
    ProtocolError,
)
from guest.statefsd.protocol import decode_batch, encode_batch

from support.fuzzing import fuzz_settings, seed_decorator
from support.tally import Outcomes, outcome_name

FRAMES = st.builds(
    Frame,
    op=st.integers(0, 255),
    request_id=st.integers(0, 2**32 - 1),
    status=st.integers(0, 0xFFFF),
    flags=st.sampled_from((0, 1, 2, 3)),
    key=st.binary(max_size=64),
    value=st.binary(max_size=256),
)


@st.composite
def bad_headers(draw) -> bytes:
    """A header with one field wrong: magic, version, reserved, flags, or a length."""
    fields = [MAGIC, PROTOCOL_VERSION, draw(st.integers(0, 255)), 1, 0, 0, 0, 0, 0]
    which = draw(st.sampled_from(("magic", "version", "reserved", "flags", "key", "value")))
    if which == "magic":
        fields[0] = draw(st.binary(min_size=2, max_size=2).filter(lambda m: m != MAGIC))
    elif which == "version":
        fields[1] = draw(st.integers(0, 255).filter(lambda v: v != PROTOCOL_VERSION))
    elif which == "reserved":
        fields[7] = draw(st.integers(1, 0xFFFF))
    elif which == "flags":
        fields[5] = draw(st.integers(4, 0xFFFF))
    elif which == "key":
        fields[6] = draw(st.integers(MAX_FRAME_KEY_BYTES + 1, 0xFFFF))
    else:
        fields[8] = draw(st.integers(MAX_FRAME_VALUE_BYTES + 1, 2**32 - 1))
    return HEADER.pack(*fields)


STREAMS = st.lists(
    FRAMES.map(Frame.encode) | st.binary(max_size=64) | bad_headers(), min_size=1, max_size=6
).map(b"".join)


def decode_all(stream: bytes, cuts: list[int]) -> tuple[list[Frame], int | None]:
    """Feed ``stream`` split at ``cuts``; returns the frames and the error errno, if any."""
    decoder = FrameDecoder()
    frames: list[Frame] = []
    bounds = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    for start, end in itertools.pairwise(bounds):
        try:
            frames += decoder.feed(stream[start:end])
        except ProtocolError as exc:
            assert exc.fatal, "a header error must close the connection"
            assert exc.errno in errno.errorcode
            return frames, exc.errno
        assert decoder.buffered < MAX_FRAME_BYTES, "decoder holds more than one frame"
    return frames, None


def test_decoder_with_arbitrary_chunks():
    outcomes = Outcomes(
        "Fuzz",
        "FrameDecoder.feed",
        "arbitrary, bad-header and valid frames, split at arbitrary points",
    )

    @fuzz_settings(800)
    @seed_decorator()
    @given(STREAMS, st.lists(st.integers(0, 2000), max_size=8))
    def run(stream: bytes, cuts: list[int]) -> None:
        whole = decode_all(stream, [])
        split = decode_all(stream, cuts)
        # Frames completed before a bad header in the same feed are dropped with the connection
        # (the server answers none of that read), so a split stream may yield more of them;
        # never different ones, and never a different error.
        assert split[1] == whole[1], "the error depends on how the bytes were split"
        assert split[0][: len(whole[0])] == whole[0], "the frames depend on the split"
        if whole[1] is None:
            assert split[0] == whole[0]
        outcomes.count(
            "frames" if whole[1] is None else f"ProtocolError {errno.errorcode[whole[1]]}"
        )

    run()
    outcomes.commit()


def test_valid_frames_round_trip_in_any_chunks():
    outcomes = Outcomes("Fuzz", "FrameDecoder.feed", "valid frame sequences, any chunking")

    @fuzz_settings(300)
    @seed_decorator()
    @given(st.lists(FRAMES, max_size=5), st.lists(st.integers(0, 4000), max_size=10))
    def run(frames: list[Frame], cuts: list[int]) -> None:
        stream = b"".join(frame.encode() for frame in frames)
        assert decode_all(stream, cuts) == (frames, None)
        outcomes.count("round-tripped")

    run()
    outcomes.commit()


def test_oversized_header_is_refused_before_its_payload():
    """A header claiming the largest payload is refused from its 20 bytes alone."""
    header = HEADER.pack(MAGIC, PROTOCOL_VERSION, 2, 1, 0, 0, 0, 0, MAX_FRAME_VALUE_BYTES + 1)
    decoder = FrameDecoder()
    try:
        decoder.feed(header)
    except ProtocolError as exc:
        assert exc.errno == errno.EMSGSIZE
    else:
        raise AssertionError("oversized header accepted")
    assert len(header) == HEADER_BYTES


OPS = st.lists(
    st.tuples(
        st.text(max_size=30)
        .map(lambda tail: "/state/" + tail)
        .filter(lambda key: not any(0xD800 <= ord(ch) <= 0xDFFF for ch in key)),
        st.none() | st.binary(max_size=200),
    ),
    max_size=6,
)


def test_decode_batch_with_arbitrary_bytes():
    outcomes = Outcomes("Fuzz", "decode_batch", "arbitrary bytes and mutated valid batches")

    @fuzz_settings(800)
    @seed_decorator()
    @given(
        st.binary(max_size=300) | OPS.map(encode_batch),
        st.lists(st.integers(0, 400)),
        st.integers(0, 255),
    )
    def run(payload: bytes, flips: list[int], mask: int) -> None:
        data = bytearray(payload)
        for flip in flips:
            if data:
                data[flip % len(data)] ^= mask
        try:
            operations = decode_batch(bytes(data))
        except ProtocolError as exc:
            assert exc.errno == errno.EINVAL and not exc.fatal
            outcomes.count(outcome_name(exc))
            return
        for key, value in operations:
            assert isinstance(key, bytes) and (value is None or isinstance(value, bytes))
        outcomes.count("decoded")

    run()
    outcomes.commit()


def test_batches_round_trip():
    outcomes = Outcomes("Fuzz", "decode_batch", "encode_batch round trip")

    @fuzz_settings(200)
    @seed_decorator()
    @given(OPS)
    def run(operations: list[tuple[str, bytes | None]]) -> None:
        decoded = decode_batch(encode_batch(operations))
        assert decoded == [(key.encode("utf-8"), value) for key, value in operations]
        outcomes.count("round-tripped")

    run()
    outcomes.commit()
