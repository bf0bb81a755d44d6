"""Reading and choosing between the two superblock copies.

Like U-Boot's redundant environment, the superblock lives twice (LBA 0 and 1) and each write
goes to the copy that is *not* current, with a higher generation. A torn superblock write
therefore damages only the copy being replaced, and the other one still names a complete
state. The valid copy with the highest generation wins.

Format writes *both* copies (one after the other, each flushed), so a formatted device never
has an empty slot. That is what tells the one harmless no-valid-copy case, a first format
torn on a blank device (one copy torn, the other never written), from damage to a real store
(which always leaves a copy that is not empty). As a second guard, Store.open refuses to call
a device blank when a journal region starts with a record.

Falling back to the older copy is right after a torn superblock write, but not after bit rot
in a copy that had become current: the compaction it committed (pending changes included) and
every commit group appended since would vanish. When the copy in use is a compaction's epoch
reservation and the other copy is damaged, the other region tells what happened: if it holds
that epoch's complete snapshot (its last record is flagged as such), the switch was at least
being written, which a compaction does only after the snapshot is durable, so taking the
switch is right whether its write was torn (the compaction had not returned: either outcome
is allowed) or completed and rotted later (then it is required). :func:`select` rebuilds that
superblock: every field of it follows from the reservation and from the snapshot's length.
Without a complete snapshot the compaction never reached its switch and the older copy is the
state.
"""

from guest.statefs.blockdev import BlockDevice
from guest.statefs.errors import CorruptionError, UnformattedError
from guest.statefs.layout import (
    FLAG_SNAPSHOT,
    FLAG_SNAPSHOT_END,
    SUPERBLOCK_SLOTS,
    Superblock,
    decode_superblock,
)
from guest.statefs.replay import verified_records
from guest.values import Value


class SlotState(Value):
    """One superblock copy as found on the device; ``reason`` is "" when valid, else why not
    ("empty", "crc mismatch", ...)."""

    __slots__ = ("reason", "slot", "superblock")
    slot: int
    superblock: "Superblock | None"
    reason: str

    def __init__(self, slot: int, superblock: Superblock | None, reason: str) -> None:
        self._set(slot=slot, superblock=superblock, reason=reason)

    def verified(self) -> Superblock:
        """The superblock of a copy that verified (EIO, naming the slot, for one that did not)."""
        if self.superblock is None:
            raise CorruptionError(f"superblock slot {self.slot}: {self.reason}", lba=self.slot)
        return self.superblock

    @property
    def valid(self) -> bool:
        return self.superblock is not None


def read_slots(dev: BlockDevice) -> list[SlotState]:
    sectors = dev.read(0, SUPERBLOCK_SLOTS)
    ss = dev.sector_size
    states = []
    for slot in range(SUPERBLOCK_SLOTS):
        sb, reason = decode_superblock(sectors[slot * ss : (slot + 1) * ss])
        states.append(SlotState(slot, sb, reason))
    return states


def choose(slots: list[SlotState]) -> SlotState:
    """The current superblock: the valid copy with the highest generation (slot 0 on a tie).

    Raises :class:`UnformattedError` when neither copy was ever written, and
    :class:`CorruptionError` when copies exist but none verifies (we never guess).
    """
    valid = [state for state in slots if state.valid]
    if valid:
        return max(valid, key=lambda state: (state.verified().generation, -state.slot))
    empty = sum(state.reason == "empty" for state in slots)
    if empty == len(slots):
        raise UnformattedError("device holds no statefs superblock")
    if empty:
        # A formatted device never has an empty slot, so this is a first format cut during
        # its first write. (Store.open still refuses if the journal regions hold records.)
        raise UnformattedError(
            "device holds only a torn first superblock (a format that did not complete)"
        )
    reasons = "; ".join(f"slot {state.slot}: {state.reason}" for state in slots)
    raise CorruptionError(f"no valid superblock ({reasons})", lba=0)


#: A damaged copy is taken for the rotted switch (when no commit group proves it) only if it
#: differs from the rebuilt switch in at most this many bits. Any other superblock write that
#: can sit in that slot (a later reservation, the copy before) differs from the switch in
#: epoch, active region and ceiling: at least three bits.
MAX_ROT_BITS = 2


def _bits_apart(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).bit_count()


class Selection(Value):
    """The superblock a store opens with.

    ``slot`` is the copy treated as current (the next superblock write goes to the other);
    ``peer_damaged``: that other copy holds something that does not verify; ``rebuilt`` is ""
    or a sentence saying how the superblock was rebuilt because the damaged copy was current.
    """

    __slots__ = ("peer_damaged", "rebuilt", "slot", "superblock")
    superblock: "Superblock"
    slot: int
    peer_damaged: bool
    rebuilt: str

    def __init__(self, superblock: Superblock, slot: int, peer_damaged: bool, rebuilt: str):
        self._set(superblock=superblock, slot=slot, peer_damaged=peer_damaged, rebuilt=rebuilt)


def select(dev: BlockDevice, slots: list[SlotState]) -> Selection:
    """Choose the superblock (:func:`choose`), and rebuild the newer one if it was damaged
    after commit groups were appended under it (see the module docstring).

    The older copy reserved the epoch the newer one switched to (``epoch_ceiling`` above its
    own epoch); the newer copy differed from it only in generation (+1), epoch (the ceiling),
    active region (the other) and ``snapshot_sectors`` (the snapshot records' length).
    """
    current = choose(slots)
    peer = slots[1 - current.slot]
    damaged = not peer.valid and peer.reason != "empty"
    sb = current.verified()
    if not damaged or sb.epoch_ceiling == sb.epoch:
        return Selection(sb, current.slot, damaged, "")
    candidate = sb.replace(
        generation=sb.generation + 1,
        epoch=sb.epoch_ceiling,
        active_region=1 - sb.active_region,
        snapshot_sectors=0,
    )
    records = verified_records(dev, candidate)
    end = 0
    while end < len(records) and records[end].flags == FLAG_SNAPSHOT:
        end += 1
    if end == len(records) or records[end].flags != FLAG_SNAPSHOT | FLAG_SNAPSHOT_END:
        # No complete snapshot: the compaction never reached its switch; the older copy is
        # the state (debris of the reserved epoch is never read).
        return Selection(sb, current.slot, damaged, "")
    commits = records[end + 1 :]
    rebuilt = candidate.replace(snapshot_sectors=sum(r.sectors for r in records[: end + 1]))
    if not commits and _bits_apart(dev.read(peer.slot, 1), rebuilt.encode()) > MAX_ROT_BITS:
        # A complete snapshot alone does not prove the switch was written: a compaction cut
        # just before its switch leaves the same, and after recovery the next superblock write
        # (a reservation, torn now) goes to the same slot. Only a copy within a few flipped
        # bits of the switch is that switch; anything else falls back (the older copy names
        # the state recovery already showed).
        return Selection(sb, current.slot, damaged, "")
    after = (
        f"and {len(commits)} commit groups appended after it (seq {commits[0].seq}.."
        f"{commits[-1].seq}, from LBA {commits[0].lba})"
        if commits
        else "and no commit group after it"
    )
    note = (
        f"superblock slot {peer.slot} ({peer.reason}) held the switch of a compaction: region "
        f"{rebuilt.active_region} holds its complete snapshot ({end + 1} records) {after}, which "
        f"the older copy in slot {current.slot} would drop; rebuilt the switch from slot "
        f"{current.slot} and the region"
    )
    return Selection(rebuilt, current.slot, damaged, note)
