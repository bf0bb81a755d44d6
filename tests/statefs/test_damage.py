"""Damage on the device: each case gets a deterministic outcome, and opening never writes over
damage. Byte-editing helpers change exactly what the test names."""

import errno

import pytest

from guest.statefs import (
    CorruptionError,
    MemoryBlockDevice,
    StatefsError,
    Store,
    StoreConfig,
    check_device,
)
from guest.statefs.layout import RECORD_HEADER_BYTES, SUPERBLOCK_BYTES
from harness.crashsim.devices import CrashDevice, PowerCut

from support.stores import EPOCH, VOLUME_ID, crash_and_reopen, new_store

SS = 512


def region_lba(store: Store) -> int:
    return store.superblock.region_start(store.superblock.active_region)


def flip(image: bytes, offset: int, mask: int = 0x01) -> bytes:
    edited = bytearray(image)
    edited[offset] ^= mask
    return bytes(edited)


def open_image(image: bytes, **config) -> Store:
    return Store.open(MemoryBlockDevice.from_image(image, SS), StoreConfig(**config))


def three_groups() -> tuple[Store, bytes]:
    store = new_store()
    for index in range(3):
        store.put(f"/state/g{index}", bytes([index]) * 100)
        store.sync()
    return store, bytes(store._dev.data)


def test_crc_mismatch_in_the_last_record_is_a_torn_tail_and_gets_sealed():
    store, image = three_groups()
    last = region_lba(store) * SS + 2 * SS
    damaged = flip(image, last + RECORD_HEADER_BYTES + 20)
    reopened = open_image(damaged)
    assert reopened.list() == ["/state/g0", "/state/g1"]
    assert reopened.replay.tail_reason == "crc mismatch"
    assert reopened.replay.torn_tail
    assert reopened.counters["seals"] == 1
    reopened.put("/state/after", b"ok")
    reopened.sync()
    again = crash_and_reopen(reopened)
    assert again.list() == ["/state/after", "/state/g0", "/state/g1"]
    assert not again.replay.torn_tail


def test_crc_mismatch_in_a_middle_record_is_reported_not_skipped():
    store, image = three_groups()
    middle = region_lba(store) * SS + SS
    damaged = flip(image, middle + RECORD_HEADER_BYTES + 20)
    with pytest.raises(CorruptionError) as info:
        open_image(damaged)
    assert info.value.errno == errno.EIO
    assert info.value.lba == region_lba(store) + 1
    assert "record seq 3 was committed after it" in str(info.value)
    report = check_device(MemoryBlockDevice.from_image(damaged))
    assert not report.ok
    assert "journal damaged at LBA" in report.errors[0]


def test_open_never_writes_over_damage():
    store, image = three_groups()
    damaged = flip(image, region_lba(store) * SS + SS + 40)
    dev = MemoryBlockDevice.from_image(damaged)
    with pytest.raises(CorruptionError):
        Store.open(dev)
    with pytest.raises(CorruptionError):
        Store.open_or_format(dev)
    assert bytes(dev.data) == damaged


def test_zeroed_middle_sector_is_corruption():
    store, image = three_groups()
    start = region_lba(store) * SS + SS
    damaged = image[:start] + bytes(SS) + image[start + SS :]
    with pytest.raises(CorruptionError, match="record seq 3 was committed"):
        open_image(damaged)


def test_swapped_sectors_are_corruption():
    store, image = three_groups()
    first = region_lba(store) * SS
    a, b = image[first : first + SS], image[first + SS : first + 2 * SS]
    swapped = image[:first] + b + a + image[first + 2 * SS :]
    with pytest.raises(CorruptionError):
        open_image(swapped)


def test_damage_in_the_length_field_is_not_trusted():
    store, image = three_groups()
    header = region_lba(store) * SS + SS
    damaged = bytearray(image)
    damaged[header + 28 : header + 32] = (0xFFFFFFF0).to_bytes(4, "little")  # payload_bytes
    with pytest.raises(CorruptionError):
        open_image(bytes(damaged))


def test_one_damaged_superblock_copy_falls_back_to_the_other():
    store = new_store()
    store.put("/state/a", b"1")
    store.sync()
    store.compact()  # generations 2 (reservation, slot 1) and 3 (slot 0, region 1)
    store.put("/state/b", b"2")
    store.sync()
    store.compact()  # generations 4 (reservation, slot 1) and 5 (slot 0, region 0)
    store.put("/state/c", b"3")
    store.sync()
    image = bytes(store._dev.data)
    assert store.superblock.generation == 5
    # Damage the older copy: nothing changes, fsck warns.
    reopened = open_image(flip(image, 1 * SS + 20))
    assert reopened.list() == ["/state/a", "/state/b", "/state/c"]
    assert any("slot 1: crc mismatch" in warning for warning in reopened.fsck().warnings)
    # Damage the current copy after a commit was appended under it (bit rot, not a tear): the
    # older copy alone would drop /state/c; the commit proves the newer copy was whole, so it
    # is rebuilt (exactly) and nothing is lost.
    rotted = flip(image, 0 * SS + 20)
    rebuilt = open_image(rotted, read_only=True)
    assert rebuilt.superblock == store.superblock
    assert rebuilt.list() == ["/state/a", "/state/b", "/state/c"]
    assert "slot 0 (crc mismatch) held the switch of a compaction" in rebuilt.rebuilt
    assert any("1 commit groups" in warning for warning in rebuilt.fsck().warnings)
    # Both damaged: nothing valid remains, and that is an error, not an empty store.
    with pytest.raises(CorruptionError, match="no valid superblock"):
        open_image(flip(flip(image, 20), SS + 20))


def test_both_superblocks_damaged_is_corruption_not_unformatted():
    store = new_store()
    image = flip(flip(bytes(store._dev.data), 30), SS + 30)
    with pytest.raises(CorruptionError) as info:
        open_image(image)
    assert info.value.lba == 0
    assert "crc mismatch" in str(info.value)


def test_superblock_with_a_bad_field_but_good_crc_is_rejected():
    store = new_store()
    sb = store.superblock
    bad = sb.replace(active_region=5).encode()
    image = bad + bad + bytes(store._dev.data)[2 * SS :]
    with pytest.raises(CorruptionError, match="active_region=5"):
        open_image(image)


def test_garbage_disk_is_unformatted():
    """Random bytes are somebody's data, not a blank disk: open and open_or_format refuse with
    EMEDIUMTYPE and write nothing; only the explicit format overwrites."""
    import random

    rng = random.Random(1)
    image = bytes(rng.getrandbits(8) for _ in range(4096 * SS))
    with pytest.raises(StatefsError) as info:
        open_image(image)
    assert info.value.errno == errno.EMEDIUMTYPE
    assert "non-zero data at LBA 0" in str(info.value)
    dev = MemoryBlockDevice.from_image(image, SS)
    with pytest.raises(StatefsError) as info:
        Store.open_or_format(dev)
    assert info.value.errno == errno.EMEDIUMTYPE
    assert bytes(dev.data) == image, "a refused format must write nothing"
    formatted = Store.format(dev)
    assert len(formatted) == 0 and Store.open(dev).list() == []


def foreign_image(kind: str, sectors: int = 4096, ss: int = SS) -> bytes:
    """A device holding something that is not a statefs store."""
    image = bytearray(sectors * ss)
    if kind == "mbr":
        image[446:462] = (
            bytes([0x80, 0, 2, 0, 0x83, 0xFE, 0xFF, 0xFF])
            + (2048).to_bytes(4, "little")
            + (2000).to_bytes(4, "little")
        )
        image[510:512] = b"\x55\xaa"
    elif kind == "ext4":
        superblock = 1024
        image[superblock : superblock + 4] = (1024).to_bytes(4, "little")  # inodes
        image[superblock + 24 : superblock + 28] = (2).to_bytes(4, "little")  # 4 KiB blocks
        image[superblock + 56 : superblock + 58] = b"\x53\xef"
    elif kind == "one byte":
        image[3 * ss + 100] = 1  # inside no superblock slot; LBA 3 is no region start either
        image[2 * ss + 7] = 1  # the first sector of region 0
    return bytes(image)


@pytest.mark.parametrize(
    ("kind", "ss", "found"),
    [
        ("mbr", 512, "an MBR partition table"),
        ("ext4", 512, "an ext2/3/4 superblock"),
        ("ext4", 4096, "an ext2/3/4 superblock"),
        ("one byte", 512, "non-zero data at LBA 2"),
    ],
)
def test_a_device_holding_other_data_is_never_formatted(kind, ss, found):
    image = foreign_image(kind, 4096 if ss == 512 else 512, ss)
    dev = MemoryBlockDevice.from_image(image, ss)
    with pytest.raises(StatefsError) as info:
        Store.open_or_format(dev)
    assert info.value.errno == errno.EMEDIUMTYPE
    assert found in info.value.strerror
    assert bytes(dev.data) == image


def test_a_blank_device_and_a_torn_first_format_are_formatted():
    for image in (bytes(4096 * SS), None):
        dev = MemoryBlockDevice(SS, 4096) if image is None else MemoryBlockDevice.from_image(image)
        store, formatted = Store.open_or_format(dev)
        assert formatted and len(store) == 0
    # A first format cut during its first superblock write, however the write tore.
    probe = CrashDevice(SS, 4096)
    probe.schedule_power_cut(1)  # after the first superblock write, before its flush
    with pytest.raises(PowerCut):
        Store.format(probe, volume_id=VOLUME_ID, epoch=EPOCH)
    first = probe.volatile[0]
    assert first.lba == 1 and len(probe.volatile) == 1
    outcomes = []
    for cut in (1, 4, 8, 20, 40, 67):
        for new_head in (True, False):
            torn = probe.image_with((0,), torn=(0, cut), new_head=new_head)
            dev = MemoryBlockDevice.from_image(torn, SS)
            store, formatted = Store.open_or_format(dev)  # a tear keeping every byte: opens
            assert len(store) == 0
            assert Store.open(dev).superblock == store.superblock
            outcomes.append(formatted)
    assert outcomes.count(True) >= 10


def test_garbage_journal_behind_a_valid_superblock_replays_to_empty():
    import random

    store = new_store()
    rng = random.Random(2)
    region = region_lba(store) * SS
    image = bytearray(store._dev.data)
    image[region:] = bytes(rng.getrandbits(8) for _ in range(len(image) - region))
    reopened = open_image(bytes(image))
    assert reopened.list() == []
    assert reopened.replay.tail_reason == "no record"


def test_truncated_device_is_an_error():
    _store, image = three_groups()
    with pytest.raises(StatefsError) as info:
        open_image(image[: 100 * SS])
    assert info.value.errno == errno.EIO
    with pytest.raises(StatefsError):
        open_image(image[:SS])


def test_records_of_an_earlier_format_are_never_replayed():
    _store, image = three_groups()
    dev = MemoryBlockDevice.from_image(image)
    fresh = Store.format(dev, volume_id=VOLUME_ID + 1, epoch=EPOCH)  # same epoch, new volume
    assert fresh.list() == []
    assert fresh.superblock.generation == 2
    assert open_image(bytes(dev.data)).list() == []


def test_replay_is_deterministic():
    store, image = three_groups()
    damaged = flip(image, region_lba(store) * SS + 2 * SS + 50)
    outcomes = set()
    for _ in range(3):
        reopened = open_image(damaged, read_only=True)
        outcomes.add((tuple(reopened.list()), reopened.replay.tail_reason))
    assert len(outcomes) == 1


def test_seal_prevents_resurrection_of_a_torn_group(monkeypatch):
    """A torn group K, then a new group K whose later sectors match the old one's, torn the
    other way, must not bring back the first group's operations. The seal is what prevents it;
    without it (the mutant below) the old group comes back."""

    def scenario() -> list[str]:
        dev = CrashDevice(SS, 2048)
        store = Store.format(dev, volume_id=VOLUME_ID, epoch=EPOCH)
        store.put("/state/base", b"b")
        store.sync()
        big = bytes(range(256)) * 3
        store.put("/state/x", b"1" * 10)
        store.put("/state/big", big)
        dev.schedule_power_cut(1)  # the record's write happens, its flush does not
        with pytest.raises(PowerCut):
            store.sync()
        assert len(dev.volatile) == 2
        first = CrashDevice(SS, 2048, image=dev.image_with((0,)))  # header sector only
        second_store = Store.open(first)
        assert second_store.list() == ["/state/base"]
        second_store.put("/state/y", b"2" * 10)
        second_store.put("/state/big", big)
        first.schedule_power_cut(1)
        with pytest.raises(PowerCut):
            second_store.sync()
        last = first.volatile[-1:]
        kept = (first.volatile.index(last[0]),)
        return Store.open(CrashDevice(SS, 2048, image=first.image_with(kept))).list()

    assert "/state/x" not in scenario()
    monkeypatch.setattr(Store, "_seal", lambda self: None)
    assert "/state/x" in scenario(), "the mutant without a seal should resurrect /state/x"


def test_bit_rot_in_the_current_superblock_never_drops_later_commits():
    """The newest copy rots after several groups were appended: every group survives, the
    store keeps working, and its next superblock write replaces the damaged copy."""
    store = new_store()
    store.put("/state/a", b"1")
    store.sync()
    store.compact()  # slot 1: reservation (gen 2), slot 0: the switch (gen 3)
    for index in range(5):
        store.put(f"/state/late{index}", bytes([index]) * 700)
        store.sync()
    expected = {key: store.get(key) for key in store.list()}
    rotted = open_image(flip(bytes(store._dev.data), 0 * SS + 40, 0x10))
    assert {key: rotted.get(key) for key in rotted.list()} == expected
    assert "5 commit groups appended after it (seq 2..6" in rotted.rebuilt
    rotted.put("/state/after", b"x")
    rotted.sync()
    rotted.compact()  # rewrites the damaged slot first (its reservation), then the other
    again = crash_and_reopen(rotted)
    assert again.rebuilt == ""
    assert again.list() == sorted([*expected, "/state/after"])
    assert again.fsck().ok and not again.fsck().warnings


def test_rot_in_a_switch_with_nothing_appended_keeps_the_compactions_commit():
    """compact() commits a pending put and returns, then the switch rots: the snapshot is
    complete (its last record says so), so the switch is rebuilt and the put survives. (Had
    the switch write been torn instead, compact() would not have returned and either state
    would be right.)"""
    store = new_store()
    store.put("/state/a", b"1")
    store.sync()
    store.compact()
    store.put("/state/b", b"2")  # pending: committed by the compaction's snapshot only
    store.compact()
    rotted = open_image(flip(bytes(store._dev.data), 0 * SS + 20), read_only=True)
    assert rotted.list() == ["/state/a", "/state/b"]
    assert "no commit group after it" in rotted.rebuilt
    assert rotted.superblock == store.superblock


def test_a_damaged_copy_without_a_complete_snapshot_falls_back_to_the_reservation():
    """A compaction cut before its snapshot was complete leaves the reservation current and
    the older copy beside it; if that older copy then rots, the other region holds no
    complete snapshot, so the reservation's state is the state, and fsck says why."""
    store = new_store()
    store.put("/state/a", b"1")
    store.sync()
    store.compact()  # gen 3 in slot 0, region 1
    older = bytes(store._dev.data[:SS])
    store.put("/state/b", b"2")
    store.compact()  # gen 4 (reservation) in slot 1, snapshot in region 0, gen 5 in slot 0
    image = bytearray(store._dev.data)
    image[:SS] = older  # as if the cut came before the switch...
    region0 = store.superblock.region_start(0) * SS
    image[region0 : region0 + SS] = bytes(SS)  # ...and before the snapshot was complete
    fallback = open_image(flip(bytes(image), 20), read_only=True)
    assert fallback.rebuilt == ""
    assert fallback.list() == ["/state/a"]
    warnings = fallback.fsck().warnings
    assert any("no complete snapshot of its compaction" in warning for warning in warnings)


def test_superblock_struct_is_68_bytes():
    assert SUPERBLOCK_BYTES == 68
    assert RECORD_HEADER_BYTES == 32
