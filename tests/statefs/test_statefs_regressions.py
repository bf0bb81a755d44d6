"""Store bugs found by the campaigns (crash simulator, fuzzers, fault injection), kept fixed.

Every regression test lives in the component folder of the code that had the bug; each is the
smallest test that showed it, with a docstring naming the input, what happened and which
campaign found it (``tests/README.md``). The crash simulator's workloads that found the first
four (``first-format``, ``torn-magic``, the histories) stay part of its main run;
``docs/testing/crash-consistency.md`` ("Regressions pinned") has their analysis.
"""

import errno

import pytest

from guest.statefs import (
    CorruptionError,
    MemoryBlockDevice,
    StatefsError,
    Store,
    StoreConfig,
    UnformattedError,
    check_device,
)
from guest.statefs.crc import crc32c
from guest.statefs.layout import CRC_COVERS_FROM, SUPERBLOCK
from guest.statefs.superblock import choose, read_slots
from harness.crashsim.devices import CrashDevice, PowerCut

from support.faultdev import FaultPlan, FaultyDevice
from support.stores import new_store

SS = 512


def _torn_first_format(offset: int, *, new_head: bool) -> bytes:
    """A blank device whose first format was cut during its first superblock write, that
    write torn at ``offset``."""
    dev = CrashDevice(SS, 1100)
    dev.schedule_power_cut(1)  # the first superblock write is issued, its flush never completes
    with pytest.raises(PowerCut):
        Store.format(dev, volume_id=1, epoch=7)
    assert len(dev.volatile) == 1
    return dev.image_with((0,), (0, offset), new_head=new_head)


def test_a_first_format_torn_after_its_magic_leaves_an_unformatted_device():
    """Magic and CRC new, the rest still zeros: slot 0 'crc mismatch', slot 1 'empty'. It used
    to raise EIO, so statefsd would neither open nor format the device."""
    with pytest.raises(UnformattedError):
        Store.open(MemoryBlockDevice.from_image(_torn_first_format(8, new_head=True), SS))


def test_a_first_format_torn_inside_its_magic_leaves_an_unformatted_device():
    """The first bytes still zero, the rest new: the CRC verifies (it does not cover the
    magic), so the copy reads as 'magic damaged', which used to count as damage (EIO)."""
    torn = _torn_first_format(3, new_head=False)  # b"\0\0\0B" + the rest of the superblock
    with pytest.raises(UnformattedError):
        Store.open(MemoryBlockDevice.from_image(torn, SS))


def _torn_sync(dev: CrashDevice, store: Store, marker: str, big: bytes) -> None:
    """Put ``marker`` and ``big`` and cut the power after the record's write, before its
    flush: the two sectors of the record are volatile."""
    store.put(marker, b"1" * 10)
    store.put("/state/big", big)
    dev.schedule_power_cut(1)
    with pytest.raises(PowerCut):
        store.sync()
    assert len(dev.volatile) == 2


def test_a_header_torn_inside_its_magic_is_sealed_so_it_cannot_come_back():
    """Replay used to flag a torn tail only when the header's magic survived; torn inside
    the magic, the debris was not sealed, and a later tear that brought just the magic back
    made the dropped group verify."""
    big = bytes(range(256)) * 3
    dev = CrashDevice(SS, 1100)
    store = Store.format(dev, volume_id=5, epoch=9)
    store.put("/state/base", b"b")
    store.sync()
    _torn_sync(dev, store, "/state/x", big)
    # Crash 1: the payload sector persisted, the header sector torn after its first byte.
    first = CrashDevice(SS, 1100, image=dev.image_with((0, 1), (0, 1), new_head=False))
    recovered = Store.open(first)
    assert recovered.list() == ["/state/base"]  # group x is dropped: right so far
    # Group y has the same layout and goes to the same sectors.
    _torn_sync(first, recovered, "/state/y", big)
    # Crash 2: only the first 3 bytes of y's header sector reach the disk: "NXS" over the
    # torn "\0XSF...", so the sector holds x's header again, and x's payload is still there.
    image = first.image_with((0,), (0, 3))
    again = Store.open(MemoryBlockDevice.from_image(image, SS))
    assert "/state/x" not in again.list(), "a group dropped by the first recovery came back"


def test_rot_in_the_superblock_of_a_compaction_that_committed_keeps_its_commit():
    """The crash-recover-continue histories found it. ``compact()`` commits the pending put
    of ``/state/b`` and returns; then a bit of the current superblock copy rots. The older
    copy is the compaction's epoch reservation, which names the old region, and the new region
    holds the snapshot alone (no commit group after it); open used to take the older copy as
    a torn switch (now the snapshot's end flag shows it complete and the switch is rebuilt):
    ``/state/b``, committed, is gone without an error. Required: the committed state, or EIO."""
    dev = MemoryBlockDevice(SS, 1100)
    store = Store.format(dev, volume_id=3, epoch=11)
    store.put("/state/a", b"1")
    store.sync()
    store.put("/state/b", b"2")
    store.compact()
    image = bytearray(dev.data)
    image[choose(read_slots(dev)).slot * SS + 20] ^= 1
    try:
        reopened = Store.open(MemoryBlockDevice.from_image(bytes(image), SS)).list()
    except CorruptionError:
        return
    assert reopened == ["/state/a", "/state/b"], "a returned compact() was dropped silently"


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


def test_a_read_error_while_opening_is_a_statefs_error():
    """Store.open passed device read errors through as bare OSError, not StatefsError(EIO)."""
    store = new_store(sectors=1100)
    store.put("/state/k", b"v")
    store.sync()
    plan = FaultPlan(read_at=0)
    dev = FaultyDevice(MemoryBlockDevice.from_image(bytes(store._dev.data), SS), plan)
    with pytest.raises(StatefsError) as info:
        Store.open(dev)
    assert info.value.errno == errno.EIO


def test_two_damaged_superblock_sectors_do_not_format_over_a_store_with_records():
    """Found by the damage fuzzer: slot 0 zeroed and one bit flipped in slot 1 left no
    readable superblock, and a store holding records must then fail with EIO, never be
    formatted over by open_or_format."""
    store = new_store(sectors=1100)
    store.put("/state/keep", b"precious")
    store.sync()
    image = bytearray(store._dev.data)
    image[0:512] = bytes(512)  # slot 0 reads back as zeros
    image[512 + 20] ^= 0x01  # slot 1: one bit flipped inside its CRC
    with pytest.raises(CorruptionError):
        Store.open_or_format(MemoryBlockDevice.from_image(bytes(image), 512))
