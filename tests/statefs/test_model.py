"""The store against a dict model, with power cuts, by Hypothesis.

The property is the strong one: after a crash, the recovered state equals the model at a
commit point between the last completed sync and the crash: exactly the last committed state,
or, if the crash hit a sync (or compaction) in flight, possibly the state that sync was
committing. Not "synced data survives", which a store that replays garbage would also pass.
"""

import errno

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from guest.statefs import StatefsError, Store, StoreConfig
from harness.crashsim.devices import CrashDevice, PowerCut

SECTORS = 1100
KEYS = st.sampled_from([f"/state/k{index}" for index in range(6)] + ["/state/dir/nested"])
VALUES = st.binary(max_size=700) | st.sampled_from([b"", b"x" * 3000])
CONFIG = StoreConfig(compact_min_bytes=16 * 1024, compact_garbage_ratio=2.0)


def state_of(store: Store) -> dict[str, bytes]:
    return {key: store.get(key) for key in store.list()}


class StoreModel(RuleBasedStateMachine):
    @initialize(volume_id=st.integers(0, 2**64 - 1), epoch=st.integers(0, 2**32 - 1))
    def start(self, volume_id: int, epoch: int) -> None:
        self.dev = CrashDevice(512, SECTORS)
        self.store = Store.format(self.dev, CONFIG, volume_id=volume_id, epoch=epoch)
        self.model: dict[str, bytes] = {}
        self.committed: dict[str, bytes] = {}
        self.crashes = 0

    @rule(key=KEYS, value=VALUES)
    def put(self, key: str, value: bytes) -> None:
        try:
            self.store.put(key, value)
        except StatefsError as exc:
            # Full store or full commit group: refused, and nothing changed.
            assert exc.errno in (errno.ENOSPC, errno.ENOBUFS)
            assert state_of(self.store) == self.model
            return
        self.model[key] = value

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        if key in self.model:
            self.store.delete(key)
            del self.model[key]
        else:
            try:
                self.store.delete(key)
            except StatefsError as exc:
                assert exc.errno == errno.ENOENT
            else:
                raise AssertionError("delete of a missing key succeeded")

    @rule()
    def sync(self) -> None:
        self.store.sync()
        self.committed = dict(self.model)

    @rule()
    def compact(self) -> None:
        self.store.compact()
        self.committed = dict(self.model)

    def _recover(self, image: bytes, candidates: list[dict[str, bytes]]) -> None:
        self.dev = CrashDevice(512, SECTORS, image=image)
        self.store = Store.open(self.dev, CONFIG)
        recovered = state_of(self.store)
        assert recovered in candidates, (
            f"recovered {sorted(recovered)} is none of the commit points "
            f"{[sorted(candidate) for candidate in candidates]}"
        )
        assert self.store.fsck().ok
        self.model = recovered
        self.committed = dict(recovered)
        self.crashes += 1

    @rule()
    def crash_between_calls(self) -> None:
        """Power cut with no call in flight: exactly the last committed state comes back."""
        self._recover(bytes(self.dev.durable), [self.committed])

    @precondition(lambda self: self.store.pending_ops > 0)
    @rule(
        after_ops=st.integers(0, 8),
        compact=st.booleans(),
        choice=st.data(),
    )
    def crash_during_sync(self, after_ops: int, compact: bool, choice) -> None:
        """Power cut inside a sync or compaction, then any subset of its unflushed sector
        writes persisted (in issue order), possibly one of them torn mid-sector."""
        before = dict(self.committed)
        target = dict(self.model)
        self.dev.schedule_power_cut(after_ops)
        try:
            self.store.compact() if compact else self.store.sync()
        except PowerCut:
            pass
        self.dev.cut_after = None
        count = len(self.dev.volatile)
        kept = tuple(
            index for index in range(count) if choice.draw(st.booleans(), label=f"keep {index}")
        )
        torn = None
        if kept and choice.draw(st.booleans(), label="tear one"):
            index = choice.draw(st.sampled_from(kept), label="torn write")
            torn = (index, choice.draw(st.sampled_from([1, 8, 32, 256, 511]), label="torn at"))
        self._recover(self.dev.image_with(kept, torn), [before, target])

    @invariant()
    def store_matches_model(self) -> None:
        if hasattr(self, "store"):
            assert state_of(self.store) == self.model


StoreModel.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestStoreModel = StoreModel.TestCase
