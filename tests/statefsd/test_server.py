"""statefsd over a real Unix socket on the host: operations, errors, and bad clients."""

import errno
import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from guest.ipc import frames, server
from guest.ipc.frames import Frame, FrameDecoder
from guest.statefs import StatefsError
from guest.statefsd import protocol
from guest.statefsd.client import StatefsClient

from support.statefsd_thread import ServerThread


def test_formats_an_empty_device_and_serves_the_api(statefsd):
    assert statefsd.formatted
    with statefsd.client() as client:
        assert client.hello()["protocol"] == 1
        client.put("/state/a", b"1")
        client.put("/state//boot/active", b"B", sync=True)
        assert client.get("/state/boot/active") == b"B"
        assert client.list() == ["/state/a", "/state/boot/active"]
        assert client.list("/state/boot") == ["/state/boot/active"]
        client.delete("/state/a", sync=True)
        assert client.list() == ["/state/boot/active"]
        stats = client.stats()
        assert stats["live_keys"] == 1
        assert stats["syncs"] == 2
        assert client.fsck()["ok"]


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda c: c.get("/state/missing"), errno.ENOENT),
        (lambda c: c.delete("/state/missing"), errno.ENOENT),
        (lambda c: c.put("/etc/passwd", b"x"), errno.EINVAL),
        (lambda c: c.put("/state/" + "x" * 300, b"x"), errno.ENAMETOOLONG),
        (lambda c: c.put("/state/big", bytes(70000)), errno.EFBIG),
        (lambda c: c.get(b"/state/\xff"), errno.EINVAL),
        (lambda c: c.request(99), errno.ENOSYS),
        (lambda c: c.request(protocol.OP_BATCH, value=b"\x07"), errno.EINVAL),
    ],
)
def test_errors_carry_the_stores_errno(statefsd, call, code):
    with statefsd.client() as client:
        with pytest.raises(StatefsError) as info:
            call(client)
        assert info.value.errno == code
        client.put("/state/still-works", b"yes")  # the connection stays usable
        assert client.get("/state/still-works") == b"yes"


def test_listing_pages_follow_the_cursor(statefsd, monkeypatch):
    keys = [f"/state/page/{n:03d}" for n in range(30)]
    with statefsd.client() as client:
        client.batch([(key, b"") for key in keys])
        monkeypatch.setattr(frames, "MAX_FRAME_VALUE_BYTES", 64)
        before = statefsd.server.frames.counters["frames"]
        assert client.list("/state/page") == keys
        assert statefsd.server.frames.counters["frames"] - before >= 7  # 4 keys a page
        with pytest.raises(StatefsError) as info:
            client.stats()  # a reply that cannot fit is an error reply, not a dead daemon
        assert info.value.errno == errno.EMSGSIZE


def test_batch_is_all_or_nothing(statefsd):
    with statefsd.client() as client:
        client.put("/state/keep", b"1", sync=True)
        with pytest.raises(StatefsError) as info:
            client.batch([("/state/new", b"2"), ("/state/absent", None)])
        assert info.value.errno == errno.ENOENT
        assert client.list() == ["/state/keep"]
        client.batch([("/state/new", b"2"), ("/state/keep", None)])
        assert client.reopen()["live_keys"] == 1
        assert client.get("/state/new") == b"2"


def test_reopen_drops_unsynced_changes_and_replays_synced_ones(statefsd):
    with statefsd.client() as client:
        client.put("/state/synced", b"s", sync=True)
        client.put("/state/unsynced", b"u")
        stats = client.reopen()
        assert stats["discarded_pending_ops"] == 1
        assert stats["replay_records"] == 1
        assert client.list() == ["/state/synced"]


def test_socket_is_owner_and_group_only(statefsd):
    mode = os.stat(statefsd.socket_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660  # the group is the clients' (from the runtime directory)


def raw_connection(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    return sock


def test_garbage_gets_an_error_and_a_closed_connection_others_unaffected(statefsd):
    with statefsd.client() as good:
        good.put("/state/x", b"1")
        bad = raw_connection(statefsd.socket_path)
        bad.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = FrameDecoder().feed(bad.recv(4096))
        assert reply[0].status == errno.EPROTO
        assert bad.recv(4096) == b""  # closed
        assert good.get("/state/x") == b"1"


def test_half_a_frame_does_not_block_other_clients(statefsd):
    staller = raw_connection(statefsd.socket_path)
    staller.sendall(Frame(protocol.OP_PUT, 1, key=b"/state/s", value=b"v" * 100).encode()[:30])
    with statefsd.client() as other:
        started = time.monotonic()
        other.put("/state/other", b"ok", sync=True)
        assert time.monotonic() - started < 1.0
    staller.close()


def test_partial_frames_time_out(statefsd, monkeypatch):
    monkeypatch.setattr(server, "PARTIAL_FRAME_TIMEOUT", 0.2)
    staller = raw_connection(statefsd.socket_path)
    staller.sendall(b"SF\x01")
    time.sleep(1.5)
    assert staller.recv(10) == b""


def test_disconnect_mid_request_leaves_nothing_half_applied(statefsd):
    frame = Frame(protocol.OP_BATCH, 1, value=protocol.encode_batch([("/state/half", b"x")]))
    sock = raw_connection(statefsd.socket_path)
    sock.sendall(frame.encode()[:-3])
    sock.close()
    with statefsd.client() as client:
        assert client.list() == []


def test_a_handler_bug_is_reported_and_the_daemon_keeps_serving(statefsd, monkeypatch, capfd):
    def broken(frame):
        raise RuntimeError("boom")

    monkeypatch.setitem(statefsd.server.frames.handlers, protocol.OP_STATS, broken)
    with statefsd.client() as client:
        with pytest.raises(StatefsError) as info:
            client.stats()
        assert info.value.errno == errno.EIO
        client.put("/state/alive", b"1")
    assert "statefsd: internal error in STATS" in capfd.readouterr().out


def test_too_many_connections_are_refused_not_queued(statefsd, monkeypatch):
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 2)
    clients = [statefsd.client() for _ in range(2)]
    for client in clients:
        client.hello()
    extra = raw_connection(statefsd.socket_path)
    assert extra.recv(10) == b""
    for client in clients:
        client.close()


def test_restart_on_the_same_device_keeps_synced_data(disk, tmp_path):
    first = ServerThread(disk, tmp_path / "a.sock")
    with first.client() as client:
        client.put("/state/persist", b"across restarts", sync=True)
    first.stop()
    second = ServerThread(disk, tmp_path / "b.sock")
    assert not second.formatted
    with second.client() as client:
        assert client.get("/state/persist") == b"across restarts"
    second.stop()


def test_connect_waits_for_the_daemon_and_then_gives_up(tmp_path):
    started = time.monotonic()
    with pytest.raises(StatefsError) as info:
        StatefsClient.connect(str(tmp_path / "none.sock"), wait=0.3)
    assert info.value.errno == errno.ENOENT
    assert 0.3 <= time.monotonic() - started < 2


def test_daemon_process_prints_ready_and_stops_on_sigterm(disk, tmp_path):
    sock = tmp_path / "proc.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "guest.statefsd", "--device", str(disk), "--socket", str(sock)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().startswith("statefsd: formatted")
        assert proc.stdout.readline() == "statefsd: ready\n"
        with StatefsClient.connect(str(sock)) as client:
            client.put("/state/p", b"1", sync=True)
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == "statefsd: stopped\n"
        assert not sock.exists()
    finally:
        proc.kill()
        proc.wait()


def test_corrupt_device_is_fatal_and_not_formatted_over(disk, tmp_path):
    from guest.statefs import FileBlockDevice, Store

    with Store.format(FileBlockDevice(disk)) as store:
        store.put("/state/k", b"v")
    with open(disk, "r+b") as handle:
        for slot in (0, 1):  # both superblock copies
            handle.seek(slot * 512 + 20)
            handle.write(b"\xff")
    before = disk.read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "guest.statefsd", "--device", str(disk), "--socket",
         str(tmp_path / "c.sock")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout.startswith("statefsd: fatal EIO")
    assert disk.read_bytes() == before


def test_statefsd_formats_with_a_one_frame_record_limit_where_the_device_allows(tmp_path):
    from guest.statefs import FileBlockDevice
    from guest.statefsd.server import record_limit_for

    big = tmp_path / "big.img"
    FileBlockDevice.create(big, 16 << 20).close()
    server = ServerThread(big, tmp_path / "big.sock")
    try:
        limit = server.server.store.superblock.record_limit
        assert limit == frames.MAX_FRAME_VALUE_BYTES + 512
        assert record_limit_for(FileBlockDevice(big)) == limit
        with server.client() as client:  # a largest BATCH still fits in one record
            client.batch([(f"/state/b/{n}", bytes(60000)) for n in range(17)])
    finally:
        server.stop()
    small = tmp_path / "small.img"
    FileBlockDevice.create(small, 2 << 20).close()
    assert record_limit_for(FileBlockDevice(small)) is None  # the store's own, smaller default
