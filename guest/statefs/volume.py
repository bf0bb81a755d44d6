"""A volume before there is a store on it: its layout, whether it may be formatted, the format.

The store's API never writes a superblock from scratch; this module does, once, when a device
is formatted. It also decides what an unformatted device is: a blank one (formatted when asked
to open-or-format), the wreck of a store whose superblocks were destroyed (refused as damage),
or something else entirely (refused with ``EMEDIUMTYPE``, see :mod:`guest.statefs.blank`).
"""

import errno
import os

from guest.statefs.blank import describe_non_blank
from guest.statefs.blockdev import BlockDevice
from guest.statefs.errors import CorruptionError, StatefsError
from guest.statefs.layout import (
    DEFAULT_RECORD_LIMIT,
    MIN_RECORDS_PER_REGION,
    RECORD_MAGIC,
    REGION_COUNT,
    SUPERBLOCK_SLOTS,
    Superblock,
    min_record_limit,
)
from guest.statefs.superblock import read_slots


def layout_for(dev: BlockDevice, record_limit: int | None = None) -> tuple[int, int]:
    """(region_sectors, record_limit) for a device, or EINVAL if it is too small."""
    ss = dev.sector_size
    region_sectors = (dev.sector_count - SUPERBLOCK_SLOTS) // REGION_COUNT
    region_bytes = region_sectors * ss
    smallest = min_record_limit(ss)
    if record_limit is None:
        record_limit = min(DEFAULT_RECORD_LIMIT, region_bytes // MIN_RECORDS_PER_REGION)
        record_limit -= record_limit % ss
        record_limit = max(record_limit, smallest)
    if record_limit < smallest or record_limit % ss:
        raise StatefsError(errno.EINVAL, f"record limit must be a multiple of {ss} >= {smallest}")
    if region_bytes < MIN_RECORDS_PER_REGION * record_limit:
        need = SUPERBLOCK_SLOTS * ss + REGION_COUNT * MIN_RECORDS_PER_REGION * record_limit
        raise StatefsError(
            errno.EINVAL, f"device of {dev.size_bytes} bytes is too small (need {need} bytes)"
        )
    return region_sectors, record_limit


def refuse_unless_blank(dev: BlockDevice) -> None:
    """Called when no superblock verifies and none looks torn-in-progress: return only if the
    device is blank, so formatting it loses nothing.

    A journal region that starts with a record is a store whose superblocks were destroyed (a
    format never writes a record): ``CorruptionError``. Anything else that is not zeros (a
    partition table, a file system, data) is ``EMEDIUMTYPE``, naming what was found.
    """
    _refuse_if_journal_present(dev)
    found = describe_non_blank(dev)
    if found:
        raise StatefsError(
            errno.EMEDIUMTYPE,
            f"device holds no statefs store and is not blank: {found}; refusing to "
            "format over it (Store.format overwrites on purpose)",
        )


def check_fits(sb: Superblock, dev: BlockDevice) -> None:
    """The store on ``dev`` was formatted for this device's sector size, and still fits."""
    if sb.sector_size != dev.sector_size:
        raise StatefsError(
            errno.EINVAL,
            f"store was formatted with {sb.sector_size}-byte sectors, device has {dev.sector_size}",
        )
    if sb.sector_count > dev.sector_count:
        raise StatefsError(
            errno.EIO,
            f"device has {dev.sector_count} sectors, store needs {sb.sector_count}",
        )


def write_new_volume(
    dev: BlockDevice,
    *,
    volume_id: int | None = None,
    epoch: int | None = None,
    record_limit: int | None = None,
) -> None:
    """Write the superblocks of a new, empty store to both slots.

    The new superblock gets a generation above any valid one on the device and goes to both
    slots, so it wins over an earlier store the moment its first write completes (and loses,
    leaving the old store whole, if that write is torn). The random volume id salts every
    record CRC, so records of any earlier format are never replayed.
    """
    region_sectors, record_limit = layout_for(dev, record_limit)
    try:
        slots = read_slots(dev)
    except OSError as exc:
        raise StatefsError(errno.EIO, f"device read failed while formatting: {exc}") from exc
    newest, first = -1, 1  # the newest valid copy's generation, and the slot after it
    for state in slots:
        if state.superblock is not None and state.superblock.generation > newest:
            newest, first = state.superblock.generation, 1 - state.slot
    generation = newest + 1 if newest >= 0 else 1
    if volume_id is None:
        volume_id = int.from_bytes(os.urandom(8), "little")
    if epoch is None:
        epoch = int.from_bytes(os.urandom(4), "little")
    sb = Superblock(
        sector_size=dev.sector_size,
        sector_count=dev.sector_count,
        generation=generation,
        epoch=epoch,
        active_region=0,
        region_sectors=region_sectors,
        volume_id=volume_id,
        record_limit=record_limit,
    )
    # Both copies, the one not holding the newest old superblock first, each flushed: a cut
    # during the first write leaves the old store (or, on a blank device, a torn copy next
    # to an empty one, which reads as unformatted); after it, the new store wins.
    encoded = sb.encode()
    try:
        for slot in (first, 1 - first):
            dev.write(slot, encoded)
            dev.flush()
    except OSError as exc:
        raise StatefsError(errno.EIO, f"device write failed while formatting: {exc}") from exc


def _refuse_if_journal_present(dev: BlockDevice) -> None:
    try:
        region_sectors, _ = layout_for(dev)
    except StatefsError:
        return  # too small to have held a store
    for region in range(REGION_COUNT):
        lba = SUPERBLOCK_SLOTS + region * region_sectors
        if dev.read(lba, 1).startswith(RECORD_MAGIC):
            raise CorruptionError(
                f"no valid superblock, but journal region {region} (LBA {lba}) holds statefs "
                "records: refusing to treat the device as blank",
                lba=0,
            )
