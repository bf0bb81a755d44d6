"""Store bugs the crash simulator found, kept fixed.

Each was first pinned here as a strict xfail, then fixed in the store; these are the minimal
direct tests, and the workloads that found them (``first-format``, ``torn-magic``) are part of
the main run. docs/testing/crash-consistency.md ("Regressions pinned") has the analysis.
"""

import pytest

from guest.statefs import CorruptionError, MemoryBlockDevice, Store, UnformattedError
from guest.statefs.superblock import choose, read_slots
from harness.crashsim.devices import CrashDevice, PowerCut

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
