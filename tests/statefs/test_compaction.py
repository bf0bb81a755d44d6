"""Compaction: triggered automatically, keeps the live set, and is atomic under power cuts."""

from hypothesis import given, settings
from hypothesis import strategies as st

from guest.statefs import MemoryBlockDevice, Store, StoreConfig
from guest.statefs.compaction import snapshot_bytes_bound, snapshot_records
from guest.statefs.layout import RECORD_HEADER_BYTES, Superblock
from harness.crashsim.devices import CrashDevice, PowerCut

from support.stores import EPOCH, VOLUME_ID, crash_and_reopen, new_store


def state_of(store: Store) -> dict[str, bytes]:
    return {key: store.get(key) for key in store.list()}


def test_overwrites_trigger_compaction_and_the_live_set_survives():
    store = new_store(sectors=1100)
    for round_ in range(400):
        for index in range(5):
            store.put(f"/state/k{index}", f"{round_}:{index}".encode() * 20)
        store.sync()
    assert store.counters["compactions"] >= 1
    expected = {f"/state/k{index}": f"399:{index}".encode() * 20 for index in range(5)}
    assert state_of(store) == expected
    reopened = crash_and_reopen(store)
    assert state_of(reopened) == expected
    assert reopened.replay.records < 400
    assert reopened.fsck().ok


def test_garbage_ratio_keeps_the_journal_near_the_live_size():
    store = new_store(sectors=8192, compact_min_bytes=64 * 1024, compact_garbage_ratio=2.0)
    for round_ in range(2000):
        store.put("/state/counter", str(round_).encode())
        store.sync()
    assert store.counters["compactions"] > 5
    assert store.stats()["journal_bytes"] <= 64 * 1024 + 512


def test_explicit_compaction_switches_region_and_epoch():
    store = new_store()
    store.put("/state/a", b"1")
    store.delete("/state/a")
    store.put("/state/b", b"2")
    before = store.superblock
    store.compact()
    after = store.superblock
    assert after.active_region == 1 - before.active_region
    assert after.epoch == before.epoch + 1 == after.epoch_ceiling
    # one superblock write reserves the epoch, the second one commits the switch
    assert after.generation == before.generation + 2
    reopened = crash_and_reopen(store)
    assert state_of(reopened) == {"/state/b": b"2"}
    assert reopened.replay.ops == 1  # the snapshot holds only the live key


def test_stale_records_in_a_reused_region_are_not_replayed():
    store = new_store()
    for index in range(20):
        store.put(f"/state/old{index}", b"o" * 200)
        store.sync()
    store.compact()  # -> region 1
    for index in range(20):
        store.delete(f"/state/old{index}")
    store.put("/state/new", b"n")
    store.compact()  # -> region 0 again, over the old records of epoch 7
    assert store.superblock.active_region == 0
    reopened = crash_and_reopen(store)
    assert state_of(reopened) == {"/state/new": b"n"}
    assert reopened.replay.tail_reason == "stale epoch"


def test_snapshot_records_are_bounded_and_sorted():
    live = {f"/state/{index:04d}": bytes(1000) for index in range(300)}
    records = list(
        snapshot_records(live, epoch=1, salt=0, sector_size=512, record_limit=64 * 1024 + 1024)
    )
    assert len(records) > 1
    assert all(len(record) <= 64 * 1024 + 1024 for record in records)
    live_bytes = sum(8 + len(key) + len(value) for key, value in live.items())
    bound = snapshot_bytes_bound(live_bytes, len(live), 512, 64 * 1024 + 1024)
    assert sum(len(record) for record in records) <= bound
    assert records[0][RECORD_HEADER_BYTES + 8 :].startswith(b"/state/0000")


def summary(state: dict[str, bytes]) -> str:
    return ", ".join(f"{key}={len(value)}B" for key, value in sorted(state.items()))


def crash_everywhere(setup, action, *, sectors=2048):
    """Run ``action`` on a fresh store from ``setup`` (which returns the committed state),
    cutting power before each device operation in turn; recover every crash state, check it is
    the committed state before or after the action, and return which one each was."""
    outcomes = []
    cut = 0
    while True:
        dev = CrashDevice(512, sectors)
        store = Store.format(dev, StoreConfig(), volume_id=VOLUME_ID, epoch=EPOCH)
        before = setup(store)
        dev.schedule_power_cut(cut)
        try:
            action(store)
            finished = True
        except PowerCut:
            finished = False
        after = before if store._live is None else state_of(store)  # close() ends the store
        for label, image in dev.crash_states(exhaustive_up_to=8, samples=64, seed=cut):
            recovered = state_of(Store.open(CrashDevice(512, sectors, image=image)))
            assert recovered in (before, after), (
                f"cut before op {cut}, {label}: {summary(recovered)}"
            )
            outcomes.append(recovered == after)
        if finished:
            return outcomes
        cut += 1


def test_compaction_is_atomic_under_power_cuts_at_every_device_operation():
    def setup(store):
        for index in range(30):
            store.put(f"/state/s{index:02d}", bytes([index]) * 300)
            store.sync()
        committed = state_of(store)
        store.delete("/state/s00")  # pending: the compaction commits it
        return committed

    outcomes = crash_everywhere(setup, Store.compact)
    assert True in outcomes
    assert False in outcomes
    assert len(outcomes) > 50


def test_a_sync_that_compacts_is_atomic_under_power_cuts():
    def setup(store):
        for index in range(12):
            store.put(f"/state/t{index:02d}", bytes([index]) * 2000)
            store.sync()
        return state_of(store)

    def action(store):
        store.put("/state/t00", b"new")
        store.put("/state/extra", b"x" * 40000)
        store._config = StoreConfig(compact_min_bytes=0, compact_garbage_ratio=1.0)
        store.sync()

    outcomes = crash_everywhere(setup, action)
    assert True in outcomes
    assert False in outcomes


@given(
    live_bytes=st.integers(0, 1 << 24),
    live_keys=st.integers(1, 1 << 16),
    sectors=st.sampled_from([1200, 4096, 65536, 1 << 17]),
    sector_size=st.sampled_from([512, 4096]),
)
@settings(max_examples=300, deadline=None, derandomize=True)
def test_the_put_fast_path_never_skips_a_real_enospc(live_bytes, live_keys, sectors, sector_size):
    from guest.statefs.compaction import LIVE_FILL_DEN, LIVE_FILL_NUM, surely_fits_below
    from guest.statefs.volume import layout_for

    if sector_size == 4096:
        sectors //= 8
    dev = MemoryBlockDevice(sector_size, sectors)
    region_sectors, record_limit = layout_for(dev)
    sb = Superblock(sector_size, sectors, 1, 1, 0, region_sectors, 1, record_limit)
    room = sb.region_bytes * LIVE_FILL_NUM // LIVE_FILL_DEN
    if live_bytes <= surely_fits_below(sb):
        assert snapshot_bytes_bound(live_bytes, live_keys, sector_size, record_limit) <= room


def test_a_clean_close_checkpoints_a_long_journal():
    store = new_store(sectors=8192)
    for round_ in range(1500):
        store.put("/state/counter", str(round_).encode() * 50)
        store.sync()
    assert store.stats()["journal_bytes"] > 512 * 1024
    image_before_close = bytes(store._dev.data)
    store.close()
    reopened = Store.open(MemoryBlockDevice.from_image(bytes(store._dev.data)))
    assert reopened.replay.records == 1
    assert reopened.get("/state/counter") == b"1499" * 50
    # Without the close (a crash), the whole journal replays to the same state.
    crashed = Store.open(MemoryBlockDevice.from_image(image_before_close))
    assert crashed.replay.records > 1000
    assert crashed.get("/state/counter") == b"1499" * 50


def test_close_compaction_is_atomic_under_power_cuts():
    def setup(store):
        for round_ in range(700):
            store.put(f"/state/c{round_ % 3}", bytes([round_ % 251]) * 400)
            store.sync()
        return state_of(store)

    outcomes = crash_everywhere(setup, Store.close, sectors=4096)
    assert all(outcomes)  # nothing was pending: every crash state is the committed state
    assert len(outcomes) > 20
