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
"""

from guest.statefs.errors import CorruptionError, UnformattedError
from guest.statefs.layout import SUPERBLOCK_SLOTS, Superblock, decode_superblock
from guest.values import Value


class SlotState(Value):
    """One superblock copy as found on the device; ``reason`` is "" when valid, else why not
    ("empty", "crc mismatch", ...)."""

    __slots__ = ("reason", "slot", "superblock")

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
