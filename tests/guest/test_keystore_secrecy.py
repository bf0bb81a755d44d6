"""The device key's private seed never leaves keystored (issue 7, item 5).

The guest's services run on the host as in the VM (forked by the same supervisor, each as its
own identity, over a file-backed disk and sockets in a temp dir: ``support.guest_flow``).
After the key exists, the test reads the seed from the disk through a read-only Store, so it
knows exactly what to look for, and searches for it (raw, hex, base64, repr, any 16-byte
window: ``support.keyleak``) in:

* the console output of the whole contract flow, both boots (capfd: every service's stdout
  and stderr);
* every reply keystored sends: HELLO, SIGN, and the error replies to bad requests, including
  every one of the 256 operation codes asked for the seed's key;
* the messages keystored and statefsd print when the stored key is damaged or half missing,
  and when the record holding the seed is corrupted on disk;
* ``repr``/``str`` of a :class:`DeviceKey` and the errors of a bad seed.

Each search has a positive control (the fingerprint or the expected error is there), so a
search that looks in the wrong place cannot pass by accident. The VM-level check (the seed
is not in either boot's ``uart.log``) is in ``tests/harness/test_harness_vm.py``.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import socket
import stat
import struct
from pathlib import Path

import pytest

from guest.identities import KEYSTORED, STATEFSD
from guest.init import runtime
from guest.init.supervisor import ServiceError, Supervisor
from guest.ipc import frames
from guest.ipc.frames import Frame, FrameDecoder
from guest.keystored.keys import META_KEY, SEED_KEY, DeviceKey, DeviceKeyError
from guest.keystored.service import MAX_SIGN_BYTES, OP_SIGN, KeystoreClient, run_keystored
from guest.selftest.checks import Sockets
from guest.statefs import MAX_VALUE_BYTES, FileBlockDevice, StatefsError, Store
from guest.statefsd import protocol
from guest.statefsd.client import StatefsClient
from guest.statefsd.server import run_daemon

from support.guest_flow import contract_boot as flow_boot
from support.guest_flow import needs_root
from support.keyleak import find_leaks, read_seed

NONCE = "00112233aabbccdd"
pytestmark = needs_root


def contract_boot(disk: Path, boot: int) -> bool:
    """One boot of the guest's contract flow on the host (services, selftest, stop)."""
    return flow_boot(disk.parent, boot, NONCE)


def start_key_services(disk: Path, supervisor: Supervisor) -> Sockets:
    """statefsd and keystored only, as themselves (ServiceError if keystored cannot start)."""
    sockets = runtime.prepare(str(disk), str(disk.parent))
    supervisor.start(
        "statefsd",
        lambda ready: run_daemon(str(disk), sockets.statefsd, on_ready=ready),
        identity=STATEFSD,
    )
    supervisor.start(
        "keystored",
        lambda ready: run_keystored(sockets.keystored, sockets.statefsd, on_ready=ready),
        identity=KEYSTORED,
    )
    return sockets


@pytest.fixture
def disk(guest_run: Path) -> Path:
    return guest_run / "disk.img"


@pytest.fixture
def keyed_disk(disk: Path, capfd) -> tuple[Path, bytes]:
    """A disk after boot 1 of the contract (the device key exists), and its seed."""
    assert contract_boot(disk, 1)
    capfd.readouterr()
    return disk, read_seed(disk)


def edit_store(disk: Path, **changes: bytes | None) -> None:
    """Change the stored key records: ``seed=`` / ``meta=`` new bytes, or None to delete."""
    keys = {"seed": SEED_KEY, "meta": META_KEY}
    with Store.open(FileBlockDevice(disk)) as store:
        for name, value in changes.items():
            if value is None:
                store.delete(keys[name])
            else:
                store.put(keys[name], value)
        store.sync()


# -- the console of the whole contract flow ------------------------------------------------
def test_the_contract_flow_never_prints_the_seed(disk: Path, capfd):
    assert contract_boot(disk, 1)
    first = capfd.readouterr()
    assert contract_boot(disk, 2)
    second = capfd.readouterr()
    seed = read_seed(disk)
    assert len(seed) == 32
    console = first.out + first.err + second.out + second.err
    fingerprint = DeviceKey(seed).fingerprint
    assert f"keystored: device key fingerprint {fingerprint} (created)" in console  # control
    assert "SELFTEST: reboot persist ok" in console
    assert find_leaks(console, seed) == []


# -- keystored's replies ---------------------------------------------------------------------
def _raw_exchange(path: str, data: bytes, *, wait: float = 2.0) -> bytes:
    """Send raw bytes to a frame server; return what it sends back until one whole frame
    arrived, it closed the connection, or ``wait`` seconds of silence."""
    decoder = FrameDecoder()
    received = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(wait)
        sock.connect(path)
        sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                received += chunk
                if decoder.feed(chunk):
                    break
        except TimeoutError:
            pass
    return received


def test_keystored_replies_never_carry_the_seed(keyed_disk, capfd):
    disk, seed = keyed_disk
    supervisor = Supervisor()
    replies: list[bytes] = []
    try:
        sockets = start_key_services(disk, supervisor)
        assert stat.S_IMODE(os.stat(sockets.keystored).st_mode) == 0o600  # owner-only
        assert stat.S_IMODE(os.stat(sockets.statefsd).st_mode) == 0o660  # and its clients' group
        with KeystoreClient.connect(sockets.keystored, wait=5.0) as client:
            info = client.info()
            replies.append(json.dumps(info).encode())
            assert info["fingerprint"] == DeviceKey(seed).fingerprint  # control
            for message in (b"", b"challenge", seed, SEED_KEY.encode(), b"x" * MAX_SIGN_BYTES):
                replies.append(client.sign(message))
            with pytest.raises(StatefsError) as too_big:
                client.sign(b"x" * (MAX_SIGN_BYTES + 1))
            replies.append(str(too_big.value).encode())
        # Every operation code, asking for the seed's key: only HELLO and SIGN answer.
        decoder = FrameDecoder()
        answered = {}
        for op in range(256):
            request = Frame(op, op + 1, key=SEED_KEY.encode(), value=SEED_KEY.encode())
            raw = _raw_exchange(sockets.keystored, request.encode())
            replies.append(raw)
            (reply,) = decoder.feed(raw)
            answered[op] = reply.status
        assert {op for op, status in answered.items() if status == 0} == {frames.OP_HELLO, OP_SIGN}
        assert {status for status in answered.values() if status} == {errno.ENOSYS}
        # Malformed and hostile frames: bad magic, a non-zero status, an oversized header,
        # half a frame, garbage.
        good = Frame(OP_SIGN, 7, value=seed).encode()
        for data in (
            b"XX" + good[2:],
            Frame(OP_SIGN, 8, status=5, value=b"m").encode(),
            good[:16] + struct.pack("<I", 0xFFFFFFFF) + good[20:],
            good[: len(good) // 2],
            os.urandom(64),
            seed,
        ):
            replies.append(_raw_exchange(sockets.keystored, data, wait=0.5))
        supervisor.check()
    finally:
        supervisor.stop_all()
    console = capfd.readouterr()
    for reply in replies:
        assert find_leaks(reply, seed) == [], reply[:200]
    assert find_leaks(console.out + console.err, seed) == []


def test_statefsd_error_replies_never_echo_the_seed(keyed_disk, capfd):
    """statefsd answers GET of the seed to keystored alone (the policy refuses even init), and
    its error replies never echo a value: requests that fail while carrying the seed get
    errors that name the problem, not the bytes."""
    disk, seed = keyed_disk
    supervisor = Supervisor()
    errors: list[str] = []
    raw_replies: list[bytes] = []
    try:
        sockets = start_key_services(disk, supervisor)
        with StatefsClient.connect(sockets.statefsd, wait=5.0) as client:
            with pytest.raises(StatefsError) as refused:
                client.get(SEED_KEY)  # init may not read it; keystored loaded it (control)
            assert refused.value.errno == errno.EACCES
            errors.append(f"{refused.value.errno} {refused.value}")
            failing = [
                lambda: client.put("/state/../etc/passwd", seed),
                lambda: client.put("/not-state/key", seed),
                lambda: client.put("/state/" + "k" * 5000, seed),
                lambda: client.put("/state/big", seed * (MAX_VALUE_BYTES // len(seed) + 1)),
                lambda: client.get("/state/keystore/device/nothing"),
                lambda: client.batch([("/state/../x", seed)]),
                lambda: client.request(protocol.OP_BATCH, value=seed + b"garbage"),
                lambda: client.request(99, key=SEED_KEY.encode(), value=seed),
                lambda: client.list(seed),
            ]
            for call in failing:
                with pytest.raises(StatefsError) as caught:
                    call()
                errors.append(f"{caught.value.errno} {caught.value}")
        for data in (
            Frame(protocol.OP_PUT, 1, flags=0x80, key=SEED_KEY.encode(), value=seed).encode(),
            b"SF\x09" + seed,
        ):
            raw_replies.append(_raw_exchange(sockets.statefsd, data, wait=0.5))
        supervisor.check()
    finally:
        supervisor.stop_all()
    console = capfd.readouterr()
    assert len(errors) == 10
    for message in errors:
        assert find_leaks(message, seed) == [], message
    for reply in raw_replies:
        assert reply, "statefsd answers a bad header before closing"
        assert find_leaks(reply, seed) == [], reply
    assert find_leaks(console.out + console.err, seed) == []


def test_the_search_finds_every_form_of_the_seed():
    """The detector itself: each way a seed could be printed is found, and nothing else."""
    seed = os.urandom(32)
    for text in (
        seed,
        b"key=" + seed.hex().encode() + b"\n",
        seed.hex().upper(),
        base64.b64encode(seed),
        base64.urlsafe_b64encode(seed).rstrip(b"="),
        repr(seed),
        f"half of it: {seed[8:24].hex()}",
        b"raw half: " + seed[16:],
    ):
        assert find_leaks(text, seed), text
    assert find_leaks(DeviceKey(seed).fingerprint + DeviceKey(seed).public.hex(), seed) == []


# -- messages when the stored key is damaged -----------------------------------------------
def _other_meta(seed: bytes) -> bytes:
    other = DeviceKey(bytes(b ^ 0xFF for b in seed))
    return other.meta()


FOREIGN_META = json.dumps(
    {"version": 9, "algorithm": "rsa", "public": "00", "fingerprint": "00"}
).encode()

DAMAGE = {
    "meta is not JSON": (
        lambda seed: {"meta": b"{not json"},
        "device key metadata is malformed",
    ),
    "meta of another key": (
        lambda seed: {"meta": _other_meta(seed)},
        "device key seed does not match its stored public key",
    ),
    "meta of another algorithm": (
        lambda seed: {"meta": FOREIGN_META},
        "device key is 'rsa' version 9, not understood",
    ),
    "seed missing": (lambda seed: {"seed": None}, f"{SEED_KEY} is missing"),
    "meta missing (the seed is there)": (
        lambda seed: {"meta": None},
        f"{META_KEY} is missing",
    ),
    "seed one byte short": (
        lambda seed: {"seed": seed[:-1]},
        "device key seed is 31 bytes, expected 32",
    ),
    "seed one byte long": (
        lambda seed: {"seed": seed + b"\0"},
        "device key seed is 33 bytes, expected 32",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_keystored_errors_never_contain_the_seed(keyed_disk, capfd, damage):
    disk, seed = keyed_disk
    change, expected = DAMAGE[damage]
    edit_store(disk, **change(seed))
    supervisor = Supervisor()
    try:
        with pytest.raises(ServiceError, match="keystored exited before it was ready"):
            start_key_services(disk, supervisor)
    finally:
        supervisor.stop_all()
    console = capfd.readouterr()
    text = console.out + console.err
    fatal = [line for line in text.splitlines() if line.startswith("keystored: fatal")]
    assert len(fatal) == 1, text
    assert fatal[0].startswith("keystored: fatal EBADMSG device key unavailable: ")
    assert expected in fatal[0]  # control: this is the error we meant to cause
    assert "Traceback" not in text
    assert find_leaks(text, seed) == []


def test_statefsd_error_for_a_corrupted_seed_record_never_contains_it(keyed_disk, capfd):
    """Flip a byte of the seed inside its journal record: the CRC catches it, statefsd
    reports mid-journal corruption and stops, and neither its message nor keystored's holds
    any part of the seed (the intact 16-byte runs on either side of the flip included)."""
    disk, seed = keyed_disk
    data = bytearray(disk.read_bytes())
    offsets = []
    start = data.find(seed)
    while start != -1:
        offsets.append(start)
        start = data.find(seed, start + 1)
    assert offsets, "the seed is stored raw in its record"
    for offset in offsets:
        data[offset + len(seed) // 2] ^= 0x01
    disk.write_bytes(bytes(data))
    supervisor = Supervisor()
    try:
        with pytest.raises(ServiceError, match="statefsd exited before it was ready"):
            start_key_services(disk, supervisor)
    finally:
        supervisor.stop_all()
    console = capfd.readouterr()
    text = console.out + console.err
    fatal = [line for line in text.splitlines() if line.startswith("statefsd: fatal")]
    assert len(fatal) == 1, text
    print(fatal[0])
    assert find_leaks(text, seed) == []
    damaged = bytes(data[offsets[0] : offsets[0] + len(seed)])
    assert find_leaks(text, damaged) == []


# -- the key object --------------------------------------------------------------------------
def test_device_key_repr_str_and_errors_hide_the_seed():
    seed = bytes(range(100, 132))
    key = DeviceKey(seed)
    for text in (repr(key), str(key), f"{key}", f"{key!r}", repr([key]), repr({"k": key})):
        assert text == f"DeviceKey(fingerprint={key.fingerprint})" or key.fingerprint in text
        assert find_leaks(text, seed) == []
    for bad in (seed[:-1], seed + b"\0", b""):
        with pytest.raises(DeviceKeyError) as caught:
            DeviceKey(bad)
        assert find_leaks(str(caught.value), seed) == []
        assert find_leaks(repr(caught.value), seed) == []
    assert find_leaks(key.meta(), seed) == []
    assert find_leaks(key.sign(b"m"), seed) == []
