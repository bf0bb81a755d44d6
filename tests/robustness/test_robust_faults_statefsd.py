"""statefsd on a failing disk and on a full store, seen from a client.

The daemon serves a file-backed image through :class:`~support.faultdev.FaultyDevice`. For
each fault (EIO on a write, on a flush, ENOSPC from the image file) at successive positions:
the client's request answers EIO, every later write is refused with EIO while reads still
answer, and after the fault clears a REOPEN recovers a commit point (the last acknowledged
one, or the one whose SYNC failed), which a daemon restart then finds unchanged.

A full store (ENOSPC from the store itself) must keep every committed key readable through the
daemon, across REOPEN and restart, and still accept overwrites and deletes.
"""

from __future__ import annotations

import errno

import pytest

from guest.statefs import FileBlockDevice, StatefsError

from support.daemons import ThreadedStatefsd
from support.faultdev import FaultPlan, faulty_opener
from support.tally import Outcomes

POSITIONS = 12


def _state(client) -> dict[str, bytes]:
    return {key: client.get(key) for key in client.list()}


def _daemon(image, sock, plan: FaultPlan) -> ThreadedStatefsd:
    return ThreadedStatefsd(faulty_opener(lambda: FileBlockDevice(image), plan), sock)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "faults.img"
    FileBlockDevice.create(path, 2 << 20).close()
    return path


FAULTS = [
    ("EIO on write", {"kind": "write_at"}),
    ("EIO on flush", {"kind": "flush_at"}),
    ("ENOSPC from the image file on write", {"kind": "write_at", "write_errno": errno.ENOSPC}),
]


@pytest.mark.parametrize(("name", "fault"), FAULTS, ids=[f[0] for f in FAULTS])
def test_faults_under_statefsd_recover_a_commit_point(image, tmp_path, name, fault):
    outcomes = Outcomes("Faults", "statefsd on a faulty file-backed device", name)
    options = {k: v for k, v in fault.items() if k != "kind"}
    plan = FaultPlan(**options)
    daemon = _daemon(image, tmp_path / "f.sock", plan)
    committed: dict[str, bytes] = {}
    try:
        with daemon.client() as client:
            for position in range(POSITIONS):
                plan.arm(**{fault["kind"]: position})
                model = dict(committed)
                in_flight = None
                for step in range(3 * POSITIONS):
                    key, value = f"/state/p{step % 5}", f"{position}:{step}".encode() * 50
                    model[key] = value
                    try:
                        if step % 3 == 2:
                            in_flight = dict(model)
                            client.batch([(key, value), ("/state/batch", value)])
                            model["/state/batch"] = value
                            committed = dict(model)
                        else:
                            client.put(key, value, sync=step % 2 == 0)
                            if step % 2 == 0:
                                committed = dict(model)
                    except StatefsError as exc:
                        assert exc.errno == errno.EIO, exc
                        assert plan.fired
                        if step % 3 == 2:
                            model["/state/batch"] = value
                        in_flight = dict(model)
                        break
                    in_flight = None
                else:
                    raise AssertionError(f"fault at {fault['kind']}={position} never surfaced")
                for refused in (
                    lambda: client.put("/state/x", b"1"),
                    client.sync,
                    lambda: client.batch([("/state/x", b"2")]),
                ):
                    with pytest.raises(StatefsError) as info:
                        refused()
                    assert info.value.errno == errno.EIO
                assert client.get(key) == value  # reads still answer from memory
                plan.clear()
                client.reopen()
                state = _state(client)
                assert state in (committed, in_flight), f"position {position}: not a commit point"
                which = "the last acknowledged" if state == committed else "the failed"
                outcomes.count(f"EIO, later writes refused, REOPEN recovered {which} commit")
                committed = state
        daemon.stop()
        daemon = _daemon(image, tmp_path / "g.sock", FaultPlan())
        with daemon.client() as client:
            assert _state(client) == committed, "restart changed the recovered state"
    finally:
        daemon.stop()
    outcomes.note(f"fault at each of the first {POSITIONS} {fault['kind'][:-3]} calls, restart")
    outcomes.commit()


def test_full_store_under_statefsd_keeps_every_committed_key(image, tmp_path):
    outcomes = Outcomes(
        "Faults",
        "statefsd on a full store (2 MiB image)",
        "ENOSPC from the store: puts until full, then overwrite/delete, REOPEN, restart",
    )
    daemon = _daemon(image, tmp_path / "full.sock", FaultPlan())
    written: dict[str, bytes] = {}
    try:
        with daemon.client() as client:
            with pytest.raises(StatefsError) as info:
                for index in range(10_000):
                    key, value = f"/state/fill/{index:05d}", bytes([index % 251]) * 4000
                    client.put(key, value, sync=True)
                    written[key] = value
            assert info.value.errno == errno.ENOSPC
            outcomes.count("ENOSPC (refused, nothing changed)")
            with pytest.raises(StatefsError) as info:
                client.batch([("/state/fill/extra", bytes(4000)), ("/state/fill/more", b"1")])
            assert info.value.errno == errno.ENOSPC
            outcomes.count("ENOSPC (refused, nothing changed)")
            assert _state(client) == written
            first, second = sorted(written)[:2]
            client.put(first, b"small", sync=True)
            client.delete(second, sync=True)
            written[first] = b"small"
            del written[second]
            client.reopen()
            assert _state(client) == written
            assert client.fsck()["ok"]
        daemon.stop()
        daemon = _daemon(image, tmp_path / "full2.sock", FaultPlan())
        with daemon.client() as client:
            assert _state(client) == written
            client.put("/state/fill/after-restart", b"fits again", sync=True)
    finally:
        daemon.stop()
    outcomes.note(f"{len(written)} committed keys readable after ENOSPC, REOPEN and restart")
    outcomes.commit()
