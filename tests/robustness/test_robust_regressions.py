"""Regression tests for the bugs the robustness work found, each the smallest test that
showed it (each was a strict xfail until its fix).

Each docstring names the bug as found: input, what happened, where.
"""

from __future__ import annotations

import errno
import time

import pytest

from guest.ipc import server as ipc_server
from guest.ipc.frames import Frame, FrameDecoder
from guest.ipc.server import FrameServer, ok
from guest.statefs import (
    CorruptionError,
    MemoryBlockDevice,
    StatefsError,
    Store,
    StoreConfig,
    check_device,
)
from guest.statefs.crc import crc32c
from guest.statefs.layout import CRC_COVERS_FROM, SUPERBLOCK
from guest.statefsd import protocol

from support.daemons import ThreadedStatefsd, raw_connection, read_until
from support.faultdev import FaultPlan, faulty_opener
from support.journals import SharedDisk
from support.stores import new_store

SS = 512


def _sync_some(store: Store, count: int) -> dict[str, bytes]:
    written = {}
    for index in range(count):
        key, value = f"/state/k{index:02d}", bytes([index]) * 3000
        store.put(key, value)
        store.sync()
        written[key] = value
    return written


def _forge_sector_size(image: bytearray, slot: int, sector_size: int) -> None:
    fields = list(SUPERBLOCK.unpack_from(image, slot * SS))
    fields[4] = sector_size
    body = SUPERBLOCK.pack(*fields)
    crc = crc32c(body[CRC_COVERS_FROM:])
    body = body[:4] + crc.to_bytes(4, "little") + body[CRC_COVERS_FROM:]
    image[slot * SS : slot * SS + len(body)] = body


def test_superblock_with_sector_size_zero_is_an_error_not_a_crash():
    """Found by the forged-superblock fuzzer: a superblock with a valid CRC and sector_size 0
    made decode_superblock divide by zero (min_record_limit -> round_up), so Store.open and
    check_device raised ZeroDivisionError instead of a StatefsError."""
    store = new_store(sectors=1100)
    image = bytearray(store._dev.data)
    for slot in (0, 1):
        _forge_sector_size(image, slot, 0)
    with pytest.raises(StatefsError):
        Store.open(MemoryBlockDevice.from_image(bytes(image), SS))
    assert not check_device(MemoryBlockDevice.from_image(bytes(image), SS)).ok


def test_one_bit_in_the_superblock_magic_does_not_format_over_the_store():
    """Found by the damage fuzzer (UnformattedError from a bit flip): the magic is outside the
    superblock CRC and was checked first, so a flipped magic read as an empty slot; with the
    other copy never written, the device looked unformatted and open_or_format (statefsd's
    start) formatted over the store. Now the damaged copy is damage: the other copy is used,
    and with both damaged the open fails with EIO instead of formatting."""
    store = new_store(sectors=1100)
    store.put("/state/keep", b"precious")
    store.sync()
    image = bytearray(store._dev.data)
    image[0] ^= 0x01  # b"NXSB" -> b"OXSB" in slot 0
    reopened, formatted = Store.open_or_format(MemoryBlockDevice.from_image(bytes(image), SS))
    assert not formatted
    assert reopened.get("/state/keep") == b"precious"
    image[SS] ^= 0x01  # and in slot 1
    with pytest.raises(CorruptionError):
        Store.open_or_format(MemoryBlockDevice.from_image(bytes(image), SS))


def test_damage_inside_a_compaction_snapshot_is_reported():
    """Damage in the last record of a compaction snapshot was taken for a torn tail: replay
    dropped that record's keys without an error, fsck called it clean, and a writable open
    sealed over it, although no crash can produce it (the snapshot is flushed before the
    superblock names it)."""
    store = new_store(sectors=1100)
    written = _sync_some(store, 40)
    store.compact()
    sb = store.superblock
    image = bytearray(store._dev.data)
    end = sb.region_start(sb.active_region) * SS + store.stats()["journal_bytes"]
    image[end - 600] ^= 0x01  # inside the snapshot's last record
    dev = MemoryBlockDevice.from_image(bytes(image), SS)
    try:
        reopened = Store.open(dev, StoreConfig(read_only=True))
    except CorruptionError:
        return
    assert len(reopened) == len(written), "committed keys silently dropped"
    assert not check_device(MemoryBlockDevice.from_image(bytes(image), SS)).ok


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


def test_a_read_error_while_opening_is_a_statefs_error():
    """Store.open passed device read errors through as bare OSError, not StatefsError(EIO)."""
    from support.faultdev import FaultyDevice

    store = new_store(sectors=1100)
    store.put("/state/k", b"v")
    store.sync()
    plan = FaultPlan(read_at=0)
    dev = FaultyDevice(MemoryBlockDevice.from_image(bytes(store._dev.data), SS), plan)
    with pytest.raises(StatefsError) as info:
        Store.open(dev)
    assert info.value.errno == errno.EIO


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


def test_two_damaged_superblock_sectors_do_not_format_over_a_store_with_records():
    from guest.statefs import CorruptionError, MemoryBlockDevice, Store

    store = new_store(sectors=1100)
    store.put("/state/keep", b"precious")
    store.sync()
    image = bytearray(store._dev.data)
    image[0:512] = bytes(512)  # slot 0 reads back as zeros
    image[512 + 20] ^= 0x01  # slot 1: one bit flipped inside its CRC
    with pytest.raises(CorruptionError):
        Store.open_or_format(MemoryBlockDevice.from_image(bytes(image), 512))
