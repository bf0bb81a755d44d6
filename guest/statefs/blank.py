"""Is this device blank? A store is formatted without being asked only onto a blank device.

"Blank" is what a new sparse image file or a zeroed disk holds: the two superblock sectors and
the first sector of each journal region all zero. One more state counts as blank, the remains
of a first format that never completed: format writes the superblock copies one at a time, and
a cut during the first write (on a blank device) leaves one slot whose non-zero bytes all lie
in the superblock struct, next to a zero slot and zero regions. Anything else is somebody's
data (a partition table, a file system, another store whose superblocks were destroyed), and
formatting over it without an explicit :meth:`Store.format` would destroy it.

:func:`describe_non_blank` says what was found in words an operator can act on.
"""

from guest.statefs.blockdev import BlockDevice
from guest.statefs.layout import REGION_COUNT, SUPERBLOCK_BYTES, SUPERBLOCK_SLOTS

#: (byte offset, signature, what it is): well-known on-disk signatures, checked in order.
SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (512, b"EFI PART", "a GPT partition table"),
    (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
    (0, b"XFSB", "an XFS file system"),
    (0, b"hsqs", "a squashfs image"),
    (0x10040, b"_BHRfS_M", "a btrfs file system"),
    (1080, b"\x53\xef", "an ext2/3/4 superblock"),
    (32769, b"CD001", "an ISO 9660 image"),
    (4086, b"SWAPSPACE2", "a Linux swap area"),
    (54, b"FAT", "a FAT file system"),
    (82, b"FAT32", "a FAT file system"),
    (510, b"\x55\xaa", "an MBR partition table"),
)
#: Bytes read from the start of the device to look for those signatures.
PROBE_BYTES = 0x10040 + 8


def _region_starts(dev: BlockDevice) -> list[int]:
    region_sectors = (dev.sector_count - SUPERBLOCK_SLOTS) // REGION_COUNT
    if region_sectors < 1:
        return []
    return [SUPERBLOCK_SLOTS + region * region_sectors for region in range(REGION_COUNT)]


def _torn_first_superblock(sector: bytes) -> bool:
    """Could this be a slot a cut first format left? Its non-zero bytes all lie inside the
    superblock struct (format writes zeros after it); a tear leaves any part of the struct."""
    return any(sector[:SUPERBLOCK_BYTES]) and not any(sector[SUPERBLOCK_BYTES:])


def _signature(head: bytes) -> str:
    for offset, magic, what in SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            # An ext superblock's magic is two bytes: also ask for a plausible block size.
            if magic == b"\x53\xef" and head[1048:1052] not in (b"\0\0\0\0", b"\1\0\0\0",
                                                               b"\2\0\0\0"):  # fmt: skip
                continue
            return what
    return ""


def describe_non_blank(dev: BlockDevice) -> str:
    """ "" if ``dev`` is blank (see the module docstring), else what it holds, e.g. "an MBR
    partition table" or "non-zero data at LBA 0". Reads a few sectors; writes nothing."""
    ss = dev.sector_size
    slots = [dev.read(slot, 1) for slot in range(SUPERBLOCK_SLOTS)]
    regions = [(lba, dev.read(lba, 1)) for lba in _region_starts(dev)]
    written = [slot for slot, sector in enumerate(slots) if any(sector)]
    if not written and not any(any(sector) for _, sector in regions):
        return ""
    if (
        len(written) == 1
        and _torn_first_superblock(slots[written[0]])
        and not any(any(sector) for _, sector in regions)
    ):
        return ""
    head = dev.read(0, min(dev.sector_count, -(-PROBE_BYTES // ss)))
    non_zero = [lba for lba, sector in [*enumerate(slots), *regions] if any(sector)]
    return _signature(head) or f"non-zero data at LBA {non_zero[0]}"
