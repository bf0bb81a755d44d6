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
in a copy that had become current: commit groups appended since would vanish. The two differ
on the disk. Nothing is appended to a region before the superblock naming it is durable, so
commit groups (records without the snapshot flag) of the newer epoch in the other region prove
the damaged copy was once whole; :func:`select` then rebuilds it (every field of it follows
from the older copy, which reserved its epoch, and from the region's snapshot records).
"""

from guest.statefs.errors import CorruptionError, UnformattedError
from guest.statefs.layout import FLAG_SNAPSHOT, SUPERBLOCK_SLOTS, Superblock, decode_superblock
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

    @property
    def valid(self) -> bool:
        return self.superblock is not None


def read_slots(dev) -> list[SlotState]:
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
        return max(valid, key=lambda state: (state.superblock.generation, -state.slot))
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


def select(dev, slots: list[SlotState]) -> Selection:
    """Choose the superblock (:func:`choose`), and rebuild the newer one if it was damaged
    after commit groups were appended under it (see the module docstring).

    The older copy reserved the epoch the newer one switched to (``epoch_ceiling`` above its
    own epoch); the newer copy differed from it only in generation (+1), epoch (the ceiling),
    active region (the other) and ``snapshot_sectors`` (the snapshot records' length).
    """
    current = choose(slots)
    peer = slots[1 - current.slot]
    damaged = not peer.valid and peer.reason != "empty"
    sb = current.superblock
    if not damaged or sb.epoch_ceiling == sb.epoch:
        return Selection(sb, current.slot, damaged, "")
    candidate = sb.replace(
        generation=sb.generation + 1,
        epoch=sb.epoch_ceiling,
        active_region=1 - sb.active_region,
        snapshot_sectors=0,
    )
    records = verified_records(dev, candidate)
    snapshot = 0
    while snapshot < len(records) and records[snapshot].flags == FLAG_SNAPSHOT:
        snapshot += 1
    commits = records[snapshot:]
    if not commits:
        # At most a snapshot whose switch never became durable: the older copy is the state.
        return Selection(sb, current.slot, damaged, "")
    rebuilt = candidate.replace(snapshot_sectors=sum(r.sectors for r in records[:snapshot]))
    note = (
        f"superblock slot {peer.slot} ({peer.reason}) was current: region "
        f"{rebuilt.active_region} holds {len(commits)} commit groups (seq {commits[0].seq}.."
        f"{commits[-1].seq}, LBA {commits[0].lba}..) appended under it after its snapshot, which "
        f"the older copy in slot {current.slot} would drop; rebuilt it from slot "
        f"{current.slot} and the region"
    )
    return Selection(rebuilt, current.slot, damaged, note)
