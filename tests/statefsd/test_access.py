"""statefsd's access policy over a real socket, against real uids.

The tests run as root; each client is a forked child that dropped to another user, so the
server learns who it is from the kernel (``SO_PEERCRED``) exactly as in the VM. Every identity
tries every operation on a key of its own under every prefix, and the errnos must be the ones
the policy's table gives (written out by hand below, not computed from the policy); then the
stored values show that no refused write landed, LIST shows only readable keys, and each
denial was audited.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from guest.identities import APP, INIT, KEYSTORED, STATEFSD, UPDATED, Identity
from guest.statefs import FileBlockDevice, Store
from guest.statefsd.audit import AUDIT_BURST
from guest.statefsd.client import StatefsClient
from guest.statefsd.policy import Policy

from support.as_uid import run_as, stranger
from support.daemons import ThreadedStatefsd
from support.guest_flow import warm_imports

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as other uids")

PREFIXES = ["/state/keystore", "/state/boot", "/state/app", "/state/selftest", "/state/other"]
STRANGER = stranger()
WHO = [INIT, STATEFSD, KEYSTORED, UPDATED, APP, STRANGER]
#: Rights by hand: (identity name, prefix) -> "r", "w", "l" letters; absent means none.
TABLE = {
    ("keystored", "/state/keystore"): "rwl",
    ("updated", "/state/boot"): "rwl",
    ("init", "/state/boot"): "rl",
    ("init", "/state/app"): "rwl",
    ("init", "/state/selftest"): "rwl",
    ("init", "/state/other"): "rwl",
    ("app", "/state/app"): "rwl",
}
ADMIN = {"init"}
WRITES_SOMEWHERE = {"keystored", "updated", "init", "app"}


def key_of(who: Identity, prefix: str) -> str:
    return f"{prefix}/{who.name}"


def seeded(who: Identity, prefix: str) -> bytes:
    return f"seed {prefix} {who.name}".encode()


def expected(who: Identity, prefix: str) -> dict[str, int]:
    rights = TABLE.get((who.name, prefix), "")

    def code(letter: str) -> int:
        return 0 if letter in rights else errno.EACCES

    return {
        "GET": code("r"),
        "LIST": code("l"),
        "PUT": code("w"),
        "BATCH": code("w"),
        "DELETE": code("w"),
    }


def attempts(socket_path: str, who: Identity) -> dict:
    """In the child: every operation on the identity's key under every prefix."""
    results: dict[str, object] = {}
    mine = who.name.encode()
    with StatefsClient.connect(socket_path, wait=5.0) as client:
        for prefix in PREFIXES:
            key = key_of(who, prefix)
            calls = {
                "GET": lambda key=key: client.get(key),
                "LIST": lambda prefix=prefix: client.list(prefix),
                "PUT": lambda key=key: client.put(key, b"changed by " + mine),
                "BATCH": lambda key=key: client.batch([(key, b"batched by " + mine)]),
                "DELETE": lambda key=key: client.delete(key),
            }
            for op, call in calls.items():
                try:
                    value = call()
                except OSError as exc:
                    results[f"{prefix} {op}"] = exc.errno
                else:
                    results[f"{prefix} {op}"] = 0
                    if op == "LIST":
                        results[f"{prefix} listed"] = value
                    if op == "GET":
                        results[f"{prefix} value"] = value.decode()
        for op, call in {
            "SYNC": client.sync,
            "STATS": client.stats,
            "FSCK": client.fsck,
            "REOPEN": client.reopen,
        }.items():
            try:
                call()
            except OSError as exc:
                results[op] = exc.errno
            else:
                results[op] = 0
        results["HELLO has stats"] = "live_keys" in client.hello()
    return results


@pytest.fixture
def served():
    """statefsd with the shipped policy on an image seeded with a key per identity and
    prefix; its socket is 0666 here so that only the policy stands between them."""
    warm_imports()
    base = Path(tempfile.mkdtemp(prefix="statefs-access-"))
    base.chmod(0o755)
    image = base / "state.img"
    FileBlockDevice.create(image, 8 << 20).close()
    with Store.open_or_format(FileBlockDevice(image))[0] as store:
        for who in WHO:
            for prefix in PREFIXES:
                store.put(key_of(who, prefix), seeded(who, prefix))
        store.sync()
    daemon = ThreadedStatefsd(
        lambda: FileBlockDevice(image), base / "statefsd.sock", policy=Policy.load()
    )
    os.chmod(daemon.socket_path, 0o666)
    yield daemon, image
    daemon.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("who", WHO, ids=lambda identity: identity.name)
def test_every_operation_on_every_prefix_as_the_policy_says(served, who, capfd):
    daemon, image = served
    results = run_as(who, lambda: attempts(daemon.socket_path, who))
    for prefix in PREFIXES:
        for op, code in expected(who, prefix).items():
            assert results[f"{prefix} {op}"] == code, (who.name, prefix, op, results)
        if "r" in TABLE.get((who.name, prefix), ""):
            assert results[f"{prefix} value"] == seeded(who, prefix).decode()
        if "l" in TABLE.get((who.name, prefix), ""):
            readable = [key for key in results[f"{prefix} listed"]]
            assert all(key.startswith(prefix + "/") for key in readable)
            assert key_of(who, prefix) in readable  # (listed before its DELETE)
    admin = 0 if who.name in ADMIN else errno.EACCES
    assert (results["STATS"], results["FSCK"], results["REOPEN"]) == (admin, admin, admin)
    assert results["SYNC"] == (0 if who.name in WRITES_SOMEWHERE else errno.EACCES)
    assert results["HELLO has stats"] is (who.name in ADMIN)
    daemon.stop()
    with Store.open(FileBlockDevice(image)) as store:
        for owner in WHO:
            for prefix in PREFIXES:
                key = key_of(owner, prefix)
                if owner is who and "w" in TABLE.get((who.name, prefix), ""):
                    assert key not in store, key  # its own DELETE, after the writes
                else:
                    assert store.get(key) == seeded(owner, prefix), key  # untouched
    out = capfd.readouterr().out
    denied = [line for line in out.splitlines() if line.startswith("statefsd: denied")]
    wanted = sum(code != 0 for prefix in PREFIXES for code in expected(who, prefix).values())
    wanted += 3 * (who.name not in ADMIN) + (who.name not in WRITES_SOMEWHERE)
    assert daemon.server.audit.denied == wanted
    # Printed up to the rate limit's burst (plus what it refilled meanwhile), counted beyond.
    assert min(wanted, AUDIT_BURST) <= len(denied) <= wanted, out
    assert len(denied) + daemon.server.audit.unshown == wanted
    assert all(line.startswith(f"statefsd: denied uid={who.uid} op=") for line in denied)


def test_list_never_shows_keys_the_caller_may_not_read(served):
    daemon, _ = served
    listed = run_as(INIT, lambda: StatefsClient.connect(daemon.socket_path).list("/state"))
    assert listed, "control: init lists /state"
    assert not [key for key in listed if key.startswith("/state/keystore")]
    assert "/state/boot/init" in listed and "/state/app/app" in listed
    own = run_as(APP, lambda: StatefsClient.connect(daemon.socket_path).list("/state/app"))
    assert own == sorted(key_of(who, "/state/app") for who in WHO)


def test_a_non_normal_key_is_judged_by_its_normal_form(served):
    daemon, _ = served

    def sneak() -> list:
        codes = []
        with StatefsClient.connect(daemon.socket_path) as client:
            for key in ("/state//keystore/app", "/state/keystore//app/", "/state/app/../keystore"):
                try:
                    client.get(key)
                except OSError as exc:
                    codes.append(exc.errno)
                else:
                    codes.append(0)
        return codes

    assert run_as(APP, sneak) == [errno.EACCES, errno.EACCES, errno.EINVAL]


def test_a_user_outside_the_clients_group_cannot_reach_the_real_socket(tmp_path):
    """In the VM layout (runtime.prepare): statefsd's directory is 2750 statefsd:clients and
    the socket 0660, so a stranger gets EACCES from connect(), app connects."""
    from guest.init import runtime

    warm_imports()
    base = Path(tempfile.mkdtemp(prefix="statefs-group-"))
    try:
        base.chmod(0o755)
        image = base / "disk.img"
        FileBlockDevice.create(image, 4 << 20).close()
        sockets = runtime.prepare(str(image), str(base))
        daemon = run_as_daemon(image, sockets.statefsd)
        try:

            def connect() -> str:
                try:
                    StatefsClient.connect(sockets.statefsd).hello()
                except OSError as exc:
                    return errno.errorcode[exc.errno]
                return "CONNECTED"

            assert run_as(STRANGER, connect) == "EACCES"
            assert run_as(APP, connect) == "CONNECTED"  # control
        finally:
            daemon.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_as_daemon(image: Path, socket_path: str):
    """statefsd forked and dropped to its own identity, as init starts it."""
    from guest.init.supervisor import Supervisor
    from guest.statefsd.server import run_daemon

    supervisor = Supervisor()
    supervisor.start(
        "statefsd", lambda ready: run_daemon(str(image), socket_path, on_ready=ready),
        identity=STATEFSD,
    )  # fmt: skip

    class Handle:
        def stop(self) -> None:
            supervisor.stop_all()

    return Handle()
