"""Hostile clients of other uids against statefsd with its real policy: they get nothing.

Two hostile users (``app``, allowed to connect and to keep its own state, and a uid no service
has) each open far more connections than one uid may hold and flood statefsd with requests
for the device key's seed, writes to the boot record, listings and admin operations, while
keystored (a legitimate client) keeps doing round trips on its own keys. Measured and
asserted: not one hostile request succeeds, at most ``MAX_CONNECTIONS_PER_UID`` connections
per hostile uid are served, the protected records are unchanged, keystored is served
throughout (no errors, bounded latency), and the console carries no more denial lines than
the audit's rate limit allows. The figures go to the robustness table.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from guest.identities import APP, KEYSTORED
from guest.ipc.frames import Frame, FrameDecoder
from guest.ipc.server import MAX_CONNECTIONS_PER_UID
from guest.keystored.keys import SEED_KEY
from guest.statefs import FileBlockDevice, Store
from guest.statefsd import protocol
from guest.statefsd.audit import AUDIT_BURST, AUDIT_LINES_PER_SECOND
from guest.statefsd.client import StatefsClient
from guest.statefsd.policy import Policy
from guest.updated.bootctl import BOOTCTL_KEY

from support.as_uid import Child, stranger
from support.daemons import ThreadedStatefsd
from support.guest_flow import warm_imports
from support.tally import Outcomes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as other uids")

SECONDS = 3.0
CONNECTIONS_TRIED = 40
SEED = bytes(range(32))
BOOT = b'{"current": "a"}'
FLOOD = [
    Frame(protocol.OP_GET, 0, key=SEED_KEY.encode()),
    Frame(protocol.OP_PUT, 0, flags=protocol.FLAG_SYNC, key=BOOTCTL_KEY.encode(), value=b"x"),
    Frame(protocol.OP_LIST, 0, key=b"/state"),
    Frame(protocol.OP_REOPEN, 0),
    Frame(protocol.OP_BATCH, 0, value=protocol.encode_batch([(BOOTCTL_KEY, b"y")])),
    Frame(protocol.OP_DELETE, 0, key=b"/state//keystore/device/seed"),
]


def hostile(socket_path: str) -> dict:
    """Open CONNECTIONS_TRIED connections, keep those served, flood them for SECONDS."""
    served: list[socket.socket] = []
    refused = 0
    probe = Frame(protocol.OP_GET, 1, key=SEED_KEY.encode()).encode()
    for _ in range(CONNECTIONS_TRIED):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(socket_path)
        try:
            sock.sendall(probe)
            answered = bool(sock.recv(1 << 16))
        except OSError:
            answered = False
        if answered:
            served.append(sock)
        else:
            refused += 1
            sock.close()
    statuses: dict[str, int] = {}
    sent = 0
    deadline = time.monotonic() + SECONDS
    decoders = {id(sock): FrameDecoder() for sock in served}
    while time.monotonic() < deadline:
        for sock in served:
            batch = [FLOOD[(sent + n) % len(FLOOD)] for n in range(16)]
            sock.sendall(b"".join(Frame(f.op, sent + n, 0, f.flags, f.key, f.value).encode()
                                  for n, f in enumerate(batch)))  # fmt: skip
            sent += len(batch)
            got = 0
            while got < len(batch):
                for reply in decoders[id(sock)].feed(sock.recv(1 << 16)):
                    name = errno.errorcode.get(reply.status, "ok") if reply.status else "ok"
                    statuses[name] = statuses.get(name, 0) + 1
                    got += 1
    for sock in served:
        sock.close()
    return {"served": len(served), "refused": refused, "sent": sent, "statuses": statuses}


def legitimate(socket_path: str) -> dict:
    """keystored's own work: a put and a get of its key, as many as fit in SECONDS."""
    latencies = []
    errors = 0
    with StatefsClient.connect(socket_path, wait=5.0) as client:
        deadline = time.monotonic() + SECONDS
        n = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                client.put("/state/keystore/legit", str(n).encode())
                if client.get("/state/keystore/legit") != str(n).encode():
                    errors += 1
            except OSError:
                errors += 1
            latencies.append(time.monotonic() - started)
            n += 1
    latencies.sort()
    return {
        "ops": len(latencies),
        "errors": errors,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "max_ms": 1000 * latencies[-1],
    }


@pytest.fixture
def served():
    warm_imports()
    base = Path(tempfile.mkdtemp(prefix="statefs-hostile-"))
    base.chmod(0o755)
    image = base / "state.img"
    FileBlockDevice.create(image, 8 << 20).close()
    with Store.open_or_format(FileBlockDevice(image))[0] as store:
        store.put(SEED_KEY, SEED)
        store.put(BOOTCTL_KEY, BOOT)
        store.sync()
    daemon = ThreadedStatefsd(
        lambda: FileBlockDevice(image), base / "statefsd.sock", policy=Policy.load()
    )
    os.chmod(daemon.socket_path, 0o666)  # the policy, not the socket's mode, is under test
    yield daemon, image
    daemon.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_hostile_uids_get_nothing_and_keystored_keeps_being_served(served, capfd):
    daemon, image = served
    alone = Child(KEYSTORED, lambda: legitimate(daemon.socket_path)).result()
    capfd.readouterr()
    started = time.monotonic()
    attackers = [Child(who, lambda: hostile(daemon.socket_path)) for who in (APP, stranger())]
    victim = Child(KEYSTORED, lambda: legitimate(daemon.socket_path))
    under_attack = victim.result()
    reports = [child.result() for child in attackers]
    elapsed = time.monotonic() - started
    daemon.stop()
    console = capfd.readouterr().out.splitlines()

    outcomes = Outcomes("Security", "statefsd policy", "hostile uids flooding for 3 s")
    for report in reports:
        assert report["served"] == MAX_CONNECTIONS_PER_UID, report
        assert report["refused"] == CONNECTIONS_TRIED - MAX_CONNECTIONS_PER_UID
        assert report["sent"] > 0 and set(report["statuses"]) == {"EACCES"}, report
        outcomes.count("EACCES", report["sent"])
        outcomes.count("connection refused (per-uid bound)", report["refused"])
    assert under_attack["errors"] == 0 and alone["errors"] == 0
    assert under_attack["ops"] >= 50, (alone, under_attack)  # served all along
    assert under_attack["max_ms"] < 5000, under_attack
    with Store.open(FileBlockDevice(image)) as store:
        assert store.get(SEED_KEY) == SEED and store.get(BOOTCTL_KEY) == BOOT
    denials = [line for line in console if line.startswith("statefsd: denied")]
    allowed = AUDIT_BURST + AUDIT_LINES_PER_SECOND * elapsed + 1
    assert 0 < len(denials) <= allowed, len(denials)
    hostile_requests = sum(report["sent"] + CONNECTIONS_TRIED for report in reports)
    assert daemon.server.audit.denied == hostile_requests  # each probe and flood request
    figures = (
        f"hostile requests {hostile_requests}, all EACCES; connections served per hostile uid "
        f"{MAX_CONNECTIONS_PER_UID} of {CONNECTIONS_TRIED}; console denial lines "
        f"{len(denials)} of {daemon.server.audit.denied} denials; keystored round trips "
        f"alone {alone['ops']} (p99 {alone['p99_ms']:.1f} ms), under attack "
        f"{under_attack['ops']} (p99 {under_attack['p99_ms']:.1f} ms, max "
        f"{under_attack['max_ms']:.1f} ms), 0 errors"
    )
    print(figures)
    outcomes.note(figures)
    outcomes.commit()
