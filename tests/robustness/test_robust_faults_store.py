"""The store on a failing disk: EIO on every write and flush in turn, writes cut short, ENOSPC
from the image file, EIO on reads while opening.

For every fault position in a fixed workload (appends, batches, deletes, compactions):

* the call that hit the fault reports EIO, and every later write (put, delete, batch, sync,
  compact) is refused with EIO: the store never goes on as if nothing happened;
* no ``sync()`` that returned normally had a fault inside it (a sync that raises is the only
  way the store says "not durable", and it must say it);
* once the fault clears, a reopen recovers exactly a commit point: the last one whose sync
  returned, or the one whose sync failed (its record may have reached the disk whole), never a
  mix; fsck is clean and the store takes new writes.
"""

from __future__ import annotations

import errno
import random

import pytest

from guest.statefs import MemoryBlockDevice, StatefsError, Store, StoreConfig

from support.faultdev import FaultPlan, FaultyDevice
from support.tally import Outcomes

SS = 512
SECTORS = 1100
CONFIG = StoreConfig(compact_min_bytes=24 * 1024, compact_garbage_ratio=2.0)
STEPS = 400


def workload(seed: int = 11):
    """The fixed workload: (kind, payload) steps; syncs and compactions are commit points."""
    rng = random.Random(seed)
    keys = [f"/state/f{n}" for n in range(8)]
    steps = []
    for _ in range(STEPS):
        roll = rng.random()
        key = rng.choice(keys)
        if roll < 0.45:
            steps.append(("put", (key, rng.randbytes(rng.choice((10, 300, 1500, 4000))))))
        elif roll < 0.55:
            steps.append(("delete", key))
        elif roll < 0.65:
            steps.append(("batch", [(k, rng.randbytes(200)) for k in rng.sample(keys, 3)]))
        elif roll < 0.95:
            steps.append(("sync", None))
        else:
            steps.append(("compact", None))
    steps.append(("sync", None))
    return steps


class Run:
    """The workload on a faulty device, with its model of commit points."""

    def __init__(self, plan: FaultPlan) -> None:
        self.inner = MemoryBlockDevice(SS, SECTORS)
        Store.format(self.inner, CONFIG, volume_id=3, epoch=9).close()
        self.inner.closed = False  # the memory outlives the store; reopen it for the run
        self.plan = plan
        self.store = Store.open(FaultyDevice(self.inner, plan), CONFIG)
        self.model: dict[str, bytes] = {}
        self.committed: dict[str, bytes] = {}
        self.in_flight: dict[str, bytes] | None = None
        self.failed_at: str | None = None

    def go(self) -> None:
        for kind, payload in workload():
            try:
                self.step(kind, payload)
            except StatefsError as exc:
                assert exc.errno == errno.EIO, f"{kind}: {exc}"
                assert self.plan.fired, f"{kind} failed with no fault injected: {exc}"
                self.failed_at = kind
                return

    def step(self, kind: str, payload) -> None:
        store = self.store
        if kind == "put":
            store.put(*payload)
            self.model[payload[0]] = payload[1]
        elif kind == "delete":
            if payload in self.model:
                store.delete(payload)
                del self.model[payload]
        elif kind == "batch":
            store.write_batch(payload)
            self.model.update(payload)
        else:
            fired = len(self.plan.fired)
            self.in_flight = dict(self.model)
            store.sync() if kind == "sync" else store.compact()
            assert len(self.plan.fired) == fired, f"{kind} returned although a fault hit it"
            self.committed = dict(self.model)
            self.in_flight = None

    def check_refuses_writes(self) -> int:
        refused = 0
        for attempt in (
            lambda s: s.put("/state/after", b"x"),
            lambda s: s.delete(next(iter(self.model), "/state/f0")),
            lambda s: s.write_batch([("/state/after", b"y")]),
            lambda s: s.sync(),
            lambda s: s.compact(),
        ):
            with pytest.raises(StatefsError) as info:
                attempt(self.store)
            assert info.value.errno == errno.EIO
            refused += 1
        return refused

    def recover(self) -> dict[str, bytes]:
        self.plan.clear()
        self.store.close(sync=False)
        self.inner.closed = False
        store = Store.open(FaultyDevice(self.inner, self.plan), CONFIG)
        state = {key: store.get(key) for key in store.list()}
        allowed = [self.committed] + ([self.in_flight] if self.in_flight is not None else [])
        assert state in allowed, (
            f"recovered {sorted(state)} is not a commit point "
            f"(last committed {sorted(self.committed)})"
        )
        assert store.fsck().ok
        store.put("/state/after-recovery", b"ok")
        store.sync()
        self.store = store
        return state


def _counts() -> tuple[int, int]:
    plan = FaultPlan()
    run = Run(plan)
    plan.arm()
    run.go()
    assert run.failed_at is None
    return plan.writes, plan.flushes


FAULTS = [
    ("EIO on write, nothing written", "write_at", {}),
    ("EIO on write after 1 sector reached the disk", "write_at", {"partial_sectors": 1}),
    (
        "ENOSPC on write (image file on a full host file system)",
        "write_at",
        {"write_errno": errno.ENOSPC},
    ),
    ("EIO on flush", "flush_at", {}),
]


@pytest.mark.parametrize(("name", "kind", "options"), FAULTS, ids=[f[0] for f in FAULTS])
def test_every_fault_position_leaves_a_commit_point(name, kind, options):
    writes, flushes = _counts()
    outcomes = Outcomes("Faults", "Store on a faulty memory device", name)
    positions = range(writes if kind == "write_at" else flushes)
    for position in positions:
        plan = FaultPlan(**options)
        run = Run(plan)
        plan.arm(**{kind: position})
        run.go()
        assert run.failed_at is not None, f"fault at {kind}={position} went unreported"
        refused = run.check_refuses_writes()
        if options.get("partial_sectors"):
            _reopen_while_still_failing(run)
        state = run.recover()
        outcomes.count(
            f"EIO from {run.failed_at}, {refused} later writes refused, "
            f"recovered {'in-flight' if state != run.committed else 'last'} commit"
        )
    outcomes.note(f"every position of a {STEPS}-step workload: {writes} writes, {flushes} flushes")
    outcomes.commit()


def _reopen_while_still_failing(run: Run) -> None:
    """A reopen before the fault clears: sealing a torn tail needs a write, which fails; the
    open must then fail with EIO too (never come up claiming a sealed journal), and change
    nothing a later recovery depends on."""
    run.plan.arm(write_at=0, persistent=True)
    run.store.close(sync=False)
    run.inner.closed = False
    try:
        store = Store.open(FaultyDevice(run.inner, run.plan), CONFIG)
    except StatefsError as exc:
        assert exc.errno == errno.EIO
        assert run.plan.fired == ["write"]
        return
    assert not run.plan.fired, "open wrote through a failing disk and succeeded"
    store.close(sync=False)
    run.inner.closed = False


def test_persistent_write_fault_then_recovery():
    """A disk that keeps failing: every retry fails too, and nothing is claimed."""
    outcomes = Outcomes(
        "Faults",
        "Store on a faulty memory device",
        "EIO on every write from the 5th on (persistent)",
    )
    plan = FaultPlan(persistent=True)
    run = Run(plan)
    plan.arm(write_at=4)
    run.go()
    assert run.failed_at is not None
    for _ in range(3):
        with pytest.raises(StatefsError):
            run.store.sync()
    run.recover()
    outcomes.count("EIO, retries refused, recovered a commit point", plan.injected or 1)
    outcomes.commit()


def test_read_faults_while_opening():
    """EIO on each read of an open: the open fails with StatefsError(EIO) and writes nothing;
    once the fault clears it opens whole."""
    outcomes = Outcomes("Faults", "Store.open on a faulty memory device", "EIO on each read")
    plan = FaultPlan()
    run = Run(plan)
    run.go()
    run.store.close()
    reads = 0
    while True:
        run.inner.closed = False
        image = bytes(run.inner.data)
        plan.arm(read_at=reads)
        try:
            store = Store.open(FaultyDevice(run.inner, plan), CONFIG)
        except StatefsError as exc:
            assert exc.errno == errno.EIO
            assert bytes(run.inner.data) == image, "a failed open wrote to the device"
            outcomes.count("StatefsError EIO, nothing written")
            reads += 1
            continue
        state = {key: store.get(key) for key in store.list()}
        assert state == run.committed
        break
    assert reads >= 2
    outcomes.commit()


def test_the_workload_exercises_compaction_and_appends():
    """The fault sweep is only as good as its workload: it must compact and append."""
    plan = FaultPlan()
    run = Run(plan)
    plan.arm()
    run.go()
    assert run.store.counters["compactions"] >= 2
    assert run.store.counters["records_written"] >= 20
