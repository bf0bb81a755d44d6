"""statefsd and IPC bugs found by the robustness campaign (hostile clients, fault injection,
fuzzers), kept fixed.

Every regression test lives in the component folder of the code that had the bug; each is the
smallest test that showed it (a strict xfail until its fix), with a docstring naming the input,
what happened and where (``tests/README.md``).
"""

from __future__ import annotations

import errno
import time

import pytest

from guest.ipc import server as ipc_server
from guest.ipc.frames import Frame, FrameDecoder
from guest.ipc.server import FrameServer, ok
from guest.statefs import StatefsError
from guest.statefsd import protocol

from support.daemons import ThreadedStatefsd, raw_connection, read_until
from support.faultdev import FaultPlan, faulty_opener
from support.journals import SharedDisk

SS = 512


def test_pending_output_stays_bounded_for_a_client_that_never_reads(tmp_path, monkeypatch):
    """FrameServer answered every request of one read (up to RECV_BYTES = 256 KiB of
    requests) before checking MAX_PENDING_OUTPUT, so small requests with large replies
    buffered thousands of times the bound (about 9,000 GETs of a 64 KiB value per read): a
    client that writes and never reads could make statefsd allocate hundreds of MiB."""
    bound = 16 * 1024
    monkeypatch.setattr(ipc_server, "MAX_PENDING_OUTPUT", bound)
    reply_value = b"r" * 4096
    server = FrameServer(
        str(tmp_path / "out.sock"), {protocol.OP_GET: lambda f: ok(f, reply_value)}, name="t"
    )
    server.listen()
    try:
        sock = raw_connection(tmp_path / "out.sock")
        sock.sendall(
            b"".join(Frame(protocol.OP_GET, n, key=b"/state/k").encode() for n in range(1, 201))
        )
        worst = 0
        for _ in range(20):
            server.serve_once(timeout=0.05)
            # The per-connection reply buffer is private; reading it is the direct measure.
            for conn in server._connections.values():
                worst = max(worst, len(conn.output))
        largest_reply = 20 + len(reply_value)
        assert worst <= bound + largest_reply, f"{worst} reply bytes buffered, bound {bound}"
        sock.close()
    finally:
        server.close()


def test_a_trickling_partial_frame_times_out(tmp_path, monkeypatch):
    """The partial-frame clock restarted on every read, so a client trickling one byte at a
    time held a partial frame, and a connection slot, forever; 64 of them locked everyone
    else out (MAX_CONNECTIONS)."""
    monkeypatch.setattr(ipc_server, "PARTIAL_FRAME_TIMEOUT", 0.3)
    disk = SharedDisk()
    daemon = ThreadedStatefsd(disk.open, tmp_path / "trickle.sock")
    try:
        frame = Frame(protocol.OP_PUT, 1, key=b"/state/t", value=b"v" * 1000).encode()
        sock = raw_connection(daemon.socket_path)
        closed = False
        started = time.monotonic()
        for byte in frame[:10]:
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.1)
        if not closed:
            closed = read_until(sock, lambda data: False, timeout=0.3) == b""
        assert closed, f"partial frame still held after {time.monotonic() - started:.1f} s"
        sock.close()
    finally:
        daemon.stop()


def test_reopen_recovers_after_a_failed_reopen(tmp_path):
    """A REOPEN that failed (a read error while replaying) left statefsd with no store, and
    every later REOPEN answered 'store is not open': no recovery without a restart."""
    disk = SharedDisk(SS, 2048)
    plan = FaultPlan()
    daemon = ThreadedStatefsd(faulty_opener(disk.open, plan), tmp_path / "reopen.sock")
    try:
        with daemon.client() as client:
            client.put("/state/kept", b"1", sync=True)
            plan.arm(read_at=0, persistent=True)
            with pytest.raises(StatefsError) as info:
                client.reopen()
            assert info.value.errno == errno.EIO
            plan.clear()
            client.reopen()
            assert client.get("/state/kept") == b"1"
    finally:
        daemon.stop()


def test_client_batch_with_a_non_utf8_key_is_a_statefs_error(tmp_path):
    """StatefsClient.batch encoded str keys with strict UTF-8 and raised UnicodeEncodeError
    for a lone surrogate, where put/get/delete send the key and get EINVAL."""
    daemon = ThreadedStatefsd(SharedDisk().open, tmp_path / "batch.sock")
    try:
        with daemon.client() as client, pytest.raises(StatefsError) as info:
            client.batch([("/state/\udcff", b"x")])
        assert info.value.errno == errno.EINVAL
    finally:
        daemon.stop()


def test_frame_decoder_used_above_still_parses_replies():
    """Guard for the tests above: the helpers they rely on behave as they assume."""
    frame = Frame(protocol.OP_GET, 3, value=b"x")
    assert FrameDecoder().feed(frame.encode()) == [frame]


def test_a_request_after_the_daemon_is_gone_is_a_statefs_error(tmp_path):
    daemon = ThreadedStatefsd(SharedDisk().open, tmp_path / "gone.sock")
    client = daemon.client()
    client.put("/state/k", b"1")
    daemon.stop()
    with pytest.raises(StatefsError) as first:
        client.get("/state/k")  # the connection drops: a StatefsError, as documented
    assert first.value.errno in (errno.ECONNRESET, errno.EPIPE)
    try:
        client.get("/state/k")  # reconnecting to a daemon that is gone
    except StatefsError as exc:
        assert exc.errno in (errno.ENOENT, errno.ECONNREFUSED)
    finally:
        client.close()
