"""The live statefsd with hostile requests: through ``dispatch`` and over the socket.

``dispatch`` gets arbitrary frames (any op, status, flags, key and value, including encoded
batches and hostile paths) in arbitrary sequences, and is checked against a model of what
was acknowledged: every request is answered with its own op and id, an errno the host knows,
never an internal error, and the answers agree with the model (a failed request changes
nothing, REOPEN drops exactly the unsynced changes).

Over the socket, several raw connections send valid frames, garbage, bad headers, truncated
frames and oversized headers, interleaved byte-chunk by byte-chunk, while one well-behaved
client keeps working: each raw connection gets answers to its whole frames in order, and an
error frame and a close after bad input, never silence; the good client's requests keep
succeeding with low latency throughout.
"""

from __future__ import annotations

import errno
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guest.ipc import server as ipc_server
from guest.ipc.frames import (
    HEADER,
    MAGIC,
    MAX_FRAME_VALUE_BYTES,
    PROTOCOL_VERSION,
    Frame,
    FrameDecoder,
    ProtocolError,
)
from guest.statefs import StatefsError, normalize_key, normalize_prefix
from guest.statefsd import protocol
from guest.statefsd.server import StatefsServer

from support.daemons import ThreadedStatefsd, raw_connection, read_until
from support.fuzzing import fuzz_settings, seed_decorator
from support.journals import SharedDisk
from support.tally import Outcomes

KEYS = st.sampled_from(
    [b"/state/a", b"/state/b/c", b"/state//a/", b"/state/b", b"/state/d"] * 3
    + [
        b"/state/../../etc/passwd",
        b"/etc/passwd",
        b"/state/\xff",
        b"",
        b"/state",
        b"/state/" + b"x" * 300,
    ]
) | st.binary(max_size=24)
BATCH_KEYS = st.sampled_from(["/state/a", "/state/b/c", "/state/d", "/state/../x", "/x"])
BATCHES = st.lists(st.tuples(BATCH_KEYS, st.none() | st.binary(max_size=50)), max_size=4).map(
    protocol.encode_batch
)
VALUES = st.binary(max_size=120) | BATCHES | st.just(b"\x00" * 70000)
OPS = st.sampled_from(
    [protocol.OP_PUT, protocol.OP_GET, protocol.OP_DELETE, protocol.OP_BATCH] * 3
    + [
        protocol.OP_LIST,
        protocol.OP_SYNC,
        protocol.OP_REOPEN,
        protocol.OP_STATS,
        protocol.OP_FSCK,
        1,
        0,
        11,
        255,
    ]
)
REQUESTS = st.builds(
    Frame,
    op=OPS,
    request_id=st.integers(0, 2**32 - 1),
    status=st.sampled_from((0,) * 9) | st.integers(1, 0xFFFF),
    flags=st.sampled_from((0, protocol.FLAG_SYNC, protocol.FLAG_MORE, 3)),
    key=KEYS,
    value=VALUES,
)


class Model:
    """What statefsd acknowledged: the live state and the last committed one."""

    def __init__(self) -> None:
        self.live: dict[str, bytes] = {}
        self.committed: dict[str, bytes] = {}

    def check(self, request: Frame, reply: Frame) -> None:
        op, ok = request.op, reply.status == 0
        if op == protocol.OP_GET:
            key = normalize_key(request.key) if ok else None
            if ok:
                assert reply.value == self.live[key]
            elif reply.status == errno.ENOENT:
                assert normalize_key(request.key) not in self.live
        elif op == protocol.OP_LIST and ok and not request.value:
            prefix = normalize_prefix(request.key or b"/state")
            expected = sorted(k for k in self.live if k == prefix or k.startswith(prefix + "/"))
            assert reply.value == "\n".join(expected).encode("utf-8")
        if not ok:
            return
        if op == protocol.OP_PUT:
            self.live[normalize_key(request.key)] = request.value
        elif op == protocol.OP_DELETE:
            del self.live[normalize_key(request.key)]
        elif op == protocol.OP_BATCH:
            for key, value in protocol.decode_batch(request.value):
                if value is None:
                    del self.live[normalize_key(key)]
                else:
                    self.live[normalize_key(key)] = value
        elif op == protocol.OP_REOPEN:
            self.live = dict(self.committed)
        sync_flag = request.flags & protocol.FLAG_SYNC and op in (
            protocol.OP_PUT,
            protocol.OP_DELETE,
        )
        if op in (protocol.OP_SYNC, protocol.OP_BATCH) or sync_flag:
            self.committed = dict(self.live)


def test_dispatch_with_arbitrary_request_sequences(monkeypatch):
    outcomes = Outcomes(
        "Fuzz",
        "statefsd dispatch (FrameServer.dispatch)",
        "arbitrary frames: any op/status/flags/key/value, batches, "
        "hostile paths; sequences of up to 25",
    )
    reports: list[str] = []
    monkeypatch.setattr(ipc_server, "emit", reports.append)

    @fuzz_settings(500)
    @seed_decorator()
    @given(st.lists(REQUESTS, max_size=25))
    def run(requests: list[Frame]) -> None:
        disk = SharedDisk(512, 1100)
        server = StatefsServer(disk.open, "/nonexistent/unused.sock")
        server.open_store()
        model = Model()
        for request in requests:
            reply = server.frames.dispatch(request)
            assert (reply.op, reply.request_id) == (request.op, request.request_id)
            assert reply.status == 0 or reply.status in errno.errorcode, reply
            assert not reports, f"internal error: {reports}"
            try:
                reply.encode()
            except ProtocolError as exc:
                assert exc.errno == errno.EMSGSIZE
            model.check(request, reply)
            outcomes.count("ok" if reply.status == 0 else errno.errorcode[reply.status])
        server.close_store()

    run()
    outcomes.commit()


def _bad_header(kind: str) -> bytes:
    if kind == "oversized":
        return HEADER.pack(MAGIC, PROTOCOL_VERSION, 2, 1, 0, 0, 8, 0, MAX_FRAME_VALUE_BYTES + 1)
    if kind == "version":
        return HEADER.pack(MAGIC, 9, 2, 1, 0, 0, 0, 0, 0)
    return b"GET / HTTP/1.1\r\n\r\n"


CHUNK = st.one_of(
    REQUESTS.map(lambda frame: ("frame", frame.encode())),
    REQUESTS.map(lambda frame: ("truncated", frame.encode()[: max(1, len(frame.encode()) // 2)])),
    st.sampled_from(("oversized", "version", "garbage")).map(lambda k: ("bad", _bad_header(k))),
    st.binary(min_size=1, max_size=40).map(lambda data: ("bytes", data)),
)


@pytest.fixture
def memory_statefsd(tmp_path):
    disk = SharedDisk(512, 2048)
    daemon = ThreadedStatefsd(disk.open, tmp_path / "fuzz.sock")
    yield daemon
    daemon.stop()


def _expected(stream: bytes) -> tuple[list[Frame], bool]:
    """The whole frames on a connection that sent ``stream`` (before a bad header, if any), and
    whether it holds a bad header (which must end in an error frame and a close)."""
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for index in range(len(stream)):
        try:
            frames += decoder.feed(stream[index : index + 1])
        except ProtocolError:
            return frames, True
    return frames, False


def test_socket_with_interleaved_hostile_connections(memory_statefsd):
    outcomes = Outcomes(
        "Fuzz",
        "statefsd over its socket",
        "2-4 raw connections: valid, truncated, oversized, bad-version, "
        "garbage frames, interleaved in byte chunks",
    )
    good = memory_statefsd.client(timeout=5)
    latencies: list[float] = []

    @fuzz_settings(200)
    @seed_decorator()
    @given(
        st.integers(2, 4).flatmap(
            lambda n: st.lists(
                st.tuples(st.integers(0, n - 1), CHUNK, st.integers(1, 4)), min_size=1, max_size=12
            )
        )
    )
    def run(schedule: list[tuple[int, tuple[str, bytes], int]]) -> None:
        conns = {index: raw_connection(memory_statefsd.socket_path) for index, _, _ in schedule}
        sent = {index: bytearray() for index in conns}
        try:
            for index, (_, data), pieces in schedule:  # chunks of one frame interleave
                size = -(-len(data) // pieces)
                for start in range(0, len(data), size):
                    piece = data[start : start + size]
                    try:
                        conns[index].sendall(piece)
                    except (BrokenPipeError, ConnectionResetError):
                        break  # the daemon already dropped this connection
                    sent[index] += piece
                started = time.monotonic()
                good.put("/state/good", b"alive")
                latencies.append(time.monotonic() - started)
            for index, sock in conns.items():
                answered, poisoned = _expected(bytes(sent[index]))
                _check_replies(sock, answered, poisoned)
                outcomes.count("error frame + close" if poisoned else "answered in order")
        finally:
            for sock in conns.values():
                sock.close()
        assert good.get("/state/good") == b"alive"

    run()
    good.close()
    worst = max(latencies)
    assert worst < 2.0, f"the well-behaved client waited {worst:.2f} s"
    outcomes.note(f"well-behaved client: {len(latencies)} requests, worst {worst * 1000:.0f} ms")
    outcomes.commit()


def _check_replies(sock, answered: list[Frame], poisoned: bool) -> None:
    decoder = FrameDecoder()

    def complete(data: bytes) -> bool:
        if poisoned:
            return False  # read until the daemon closes
        return len(FrameDecoder().feed(data)) >= len(answered)

    if not poisoned and not answered:
        return
    received = read_until(sock, complete, timeout=5.0)
    replies = decoder.feed(received)
    if poisoned:
        assert replies, "bad input got neither an error frame nor anything else"
        error = replies[-1]
        assert error.request_id == 0 and error.status in (
            errno.EPROTO,
            errno.EPROTONOSUPPORT,
            errno.EMSGSIZE,
        ), error
        replies = replies[:-1]
        # Whole frames before the bad header are answered if they arrived in an earlier read.
        assert [r.request_id for r in replies] == [f.request_id for f in answered[: len(replies)]]
        return
    assert [(r.op, r.request_id) for r in replies] == [(f.op, f.request_id) for f in answered]


def test_dispatch_model_rejects_a_wrong_answer():
    """The model above is only a check if it can fail: a GET answered with other bytes."""
    model = Model()
    model.live["/state/a"] = b"1"
    with pytest.raises(AssertionError):
        model.check(
            Frame(protocol.OP_GET, 1, key=b"/state/a"), Frame(protocol.OP_GET, 1, value=b"2")
        )
    with pytest.raises(StatefsError):
        normalize_key(b"/state/../x")
