"""A compaction cut before its switch leaves records in the other region; none of them may
ever count after a later compaction into that region (resurrected keys, spurious EIO).

The minimal reproductions: a 512-byte x 1,100-sector device, so a snapshot of a few large
values spans several records; the power is cut at a superblock write of a compaction (after
its snapshot records landed), the store is reopened and keeps working, and the next
compaction writes into the region that holds the aborted snapshot.
"""

import pytest

from guest.statefs import MemoryBlockDevice, Store, StoreConfig
from guest.statefs.layout import SUPERBLOCK_SLOTS
from harness.crashsim.devices import PowerCut

from support.stores import EPOCH, VOLUME_ID

SS = 512
SECTORS = 1100
#: Makes every sync() that has anything to drop compact (the automatic path inside sync()).
EAGER = StoreConfig(compact_min_bytes=0, compact_garbage_ratio=1.0)


class CutAtSuperblockWrite(MemoryBlockDevice):
    """A memory device (every write durable at once) that loses power instead of performing
    superblock write number ``nth`` after :meth:`arm`: what precedes the cut is on disk."""

    def arm(self, nth: int) -> None:
        self.countdown = nth

    def _write(self, lba: int, data) -> None:
        countdown = getattr(self, "countdown", None)
        if lba < SUPERBLOCK_SLOTS and countdown is not None:
            if countdown == 0:
                self.countdown = None
                raise PowerCut(f"power cut at superblock write to LBA {lba}")
            self.countdown = countdown - 1
        super()._write(lba, data)


def fresh(config: StoreConfig | None = None) -> Store:
    return Store.format(CutAtSuperblockWrite(SS, SECTORS), config, volume_id=VOLUME_ID, epoch=EPOCH)


def reboot(store: Store, config: StoreConfig | None = None) -> Store:
    """What the next boot finds: the device's bytes, no close."""
    image = bytes(store._dev.data)
    return Store.open(CutAtSuperblockWrite.from_image(image, SS), config)


def cut_during(store: Store, nth: int, action) -> None:
    store._dev.arm(nth)
    with pytest.raises(PowerCut):
        action()


def contents(store: Store) -> dict[str, bytes]:
    return {key: store.get(key) for key in store.list()}


def three_big_keys(store: Store) -> dict[str, bytes]:
    for name in "abc":
        store.put(f"/state/{name}", name.encode() * 60_000)
        store.sync()
    return contents(store)


#: Which superblock write of the compaction the power cut hits: 0 is the first one (the one
#: the issue names), 1 the next; together they cover every superblock write compaction makes.
CUTS = pytest.mark.parametrize("nth", [0, 1])


@CUTS
def test_deleted_keys_stay_deleted_after_an_aborted_compaction(nth):
    store = fresh()
    full = three_big_keys(store)
    cut_during(store, nth, store.compact)
    store = reboot(store)
    assert contents(store) == full
    store.delete("/state/a")
    store.delete("/state/b")
    store.sync()
    store.compact()
    store.close()
    store = reboot(store)
    assert contents(store) == {"/state/c": full["/state/c"]}


@CUTS
def test_an_emptied_store_stays_empty_after_an_aborted_compaction(nth):
    store = fresh()
    full = three_big_keys(store)
    cut_during(store, nth, store.compact)
    store = reboot(store)
    assert contents(store) == full
    for name in "abc":
        store.delete(f"/state/{name}")
    store.sync()
    store.compact()
    store.close()
    assert len(reboot(store)) == 0


@CUTS
def test_the_compaction_inside_sync_does_not_reuse_an_aborted_epoch(nth):
    store = fresh()
    full = three_big_keys(store)
    store = reboot(store, EAGER)  # compacts on every sync from now on
    store.put("/state/a", b"replaced")
    cut_during(store, nth, store.sync)  # sync() compacts; the cut aborts that compaction
    store = reboot(store, EAGER)
    assert contents(store) == full
    store.delete("/state/b")
    store.delete("/state/c")
    compactions = store.counters["compactions"]
    store.sync()
    assert store.counters["compactions"] == compactions + 1, "sync() should have compacted"
    store.close()
    assert contents(reboot(store)) == {"/state/a": full["/state/a"]}


@CUTS
def test_stale_records_in_the_damage_scan_window_are_no_spurious_eio(nth):
    # Five 40,000-byte values: one per snapshot record, 79 sectors apart. The later snapshot
    # (one 45,000-byte value, one 40,000-byte value) ends inside the aborted snapshot's record
    # 3, and its record 4 lies in the window where replay looks for commits made after a
    # damaged one: record 3 looks damaged, record 4 looks committed after it.
    store = fresh()
    for index in range(5):
        store.put(f"/state/k{index}", bytes([index]) * 40_000)
        store.sync()
    cut_during(store, nth, store.compact)
    store = reboot(store)
    assert len(store) == 5
    for index in range(2, 5):
        store.delete(f"/state/k{index}")
    store.put("/state/k0", b"\x00" * 45_000)
    store.sync()
    store.compact()
    store.close()
    assert contents(reboot(store)) == {"/state/k0": b"\x00" * 45_000, "/state/k1": b"\x01" * 40_000}


def test_many_aborted_compactions_in_a_row_never_leave_a_replayable_record():
    """Crash, recover, crash again: each retry after a cut must take a fresh epoch, whatever
    the number of aborted attempts before it."""
    store = fresh()
    full = three_big_keys(store)
    for attempt in range(6):
        cut_during(store, attempt % 2, store.compact)
        store = reboot(store)
        assert contents(store) == full
    store.delete("/state/a")
    store.sync()
    store.compact()
    store.compact()
    store.close()
    assert sorted(reboot(store).list()) == ["/state/b", "/state/c"]


@pytest.mark.parametrize("tear", [8, 40])
def test_a_torn_reservation_after_an_aborted_switch_does_not_bring_the_snapshot_back(tear):
    """The crash histories found it: a compaction cut just before its switch leaves a complete
    snapshot; after recovery and more commits, the next compaction's reservation goes to the
    slot the switch would have used, and tears. The older copy (the aborted compaction's
    reservation) must stand; the aborted snapshot must not be taken for a rotted switch."""
    store = fresh()
    three_big_keys(store)
    cut_during(store, 1, store.compact)  # the snapshot is durable, the switch never written
    store = reboot(store)
    store.delete("/state/a")
    store.sync()
    expected = contents(store)
    sb = store.superblock
    reservation = sb.replace(generation=sb.generation + 1, epoch_ceiling=store._next_epoch())
    image = bytearray(store._dev.data)
    slot = 1 - store._slot  # where the next superblock write goes
    new = reservation.encode()
    image[slot * SS : slot * SS + tear] = new[:tear]  # the write tore after ``tear`` bytes
    recovered = Store.open(MemoryBlockDevice.from_image(bytes(image), SS))
    assert recovered.rebuilt == ""
    assert contents(recovered) == expected
