"""A/B boot control: which slot boots, with how many tries, and whether it proved good.

The model is the one Android's boot_control HAL and RAUC/U-Boot bootcount schemes share: each
slot has a priority (0 = not bootable, 15 = highest), a number of tries left, and a successful
flag. The bootloader boots the bootable slot with the highest priority, counting a try for a
slot that is not yet successful; when a slot runs out of tries without being marked
successful, it becomes unbootable and the other slot is chosen: the fallback.

The state is one small JSON document at ``/state/boot/bootctl``, so every transition is one
put of one key, synced: atomic by construction. Pure functions here; the service does I/O.
"""

import errno
import json

from guest.statefs.errors import StatefsError
from guest.values import Value

BOOTCTL_KEY = "/state/boot/bootctl"
SLOTS = ("a", "b")
MAX_PRIORITY = 15
DEFAULT_TRIES = 3
FORMAT_VERSION = 1


class SlotState(Value):
    """One slot: priority (0 = not bootable), tries left, and whether it proved good."""

    __slots__ = ("priority", "successful", "tries_left")
    priority: int
    tries_left: int
    successful: bool

    def __init__(self, priority: int, tries_left: int, successful: bool) -> None:
        self._set(priority=priority, tries_left=tries_left, successful=successful)

    @property
    def bootable(self) -> bool:
        return self.priority > 0 and (self.successful or self.tries_left > 0)


class BootControl(Value):
    """Both slots, and ``current``: the slot the last boot attempt chose (what runs now)."""

    __slots__ = ("current", "slots")
    slots: dict[str, "SlotState"]
    current: str

    def __init__(self, slots: dict[str, SlotState], current: str) -> None:
        self._set(slots=dict(slots), current=current)

    @classmethod
    def initial(cls) -> "BootControl":
        """A factory-fresh device: slot a installed and good, slot b empty."""
        return cls(
            slots={
                "a": SlotState(priority=MAX_PRIORITY, tries_left=0, successful=True),
                "b": SlotState(priority=0, tries_left=0, successful=False),
            },
            current="a",
        )

    # -- transitions (each returns the new state) --------------------------------------------

    def set_active(self, slot: str, tries: int = DEFAULT_TRIES) -> "BootControl":
        """Make ``slot`` the next to boot (after an update was written to it): top priority,
        ``tries`` attempts to prove itself, not yet successful. The other slot keeps its
        state one priority lower, so it is the fallback."""
        _check_slot(slot)
        if not 0 < tries <= 255:
            raise StatefsError(errno.EINVAL, f"tries must be 1..255, got {tries}")
        other = _other(slot)
        slots = dict(self.slots)
        slots[slot] = SlotState(priority=MAX_PRIORITY, tries_left=tries, successful=False)
        previous = slots[other]
        slots[other] = previous.replace(priority=min(previous.priority, MAX_PRIORITY - 1))
        return self.replace(slots=slots)

    def boot_attempt(self) -> "BootControl":
        """What the bootloader does at power-on: pick the slot, count a try if it is unproven.
        Raises ENOENT-like EIO if no slot is bootable (a brick; the caller must report it)."""
        bootable = [slot for slot in SLOTS if self.slots[slot].bootable]
        if not bootable:
            raise StatefsError(errno.EIO, "no bootable slot")
        chosen = max(bootable, key=lambda slot: (self.slots[slot].priority, slot == "a"))
        slots = dict(self.slots)
        state = slots[chosen]
        if not state.successful:
            tries = state.tries_left - 1
            slots[chosen] = state.replace(tries_left=tries)
        return self.replace(slots=slots, current=chosen)

    def mark_successful(self) -> "BootControl":
        """The running slot booted fine: keep it (no more tries needed)."""
        slots = dict(self.slots)
        slots[self.current] = slots[self.current].replace(successful=True, tries_left=0)
        return self.replace(slots=slots)

    def fail_current(self) -> "BootControl":
        """The running slot is bad (e.g. its health check failed): make it unbootable."""
        slots = dict(self.slots)
        slots[self.current] = SlotState(priority=0, tries_left=0, successful=False)
        return self.replace(slots=slots)

    # -- encoding ----------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "version": FORMAT_VERSION,
            "current": self.current,
            "slots": {
                slot: {
                    "priority": state.priority,
                    "tries_left": state.tries_left,
                    "successful": state.successful,
                }
                for slot, state in sorted(self.slots.items())
            },
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> "BootControl":
        """Parse and validate; raises StatefsError(EBADMSG) on anything malformed."""
        try:
            record = json.loads(raw)
            if record["version"] != FORMAT_VERSION:
                raise ValueError(f"version {record['version']!r}")
            slots = {}
            for slot in SLOTS:
                item = record["slots"][slot]
                state = SlotState(
                    priority=item["priority"],
                    tries_left=item["tries_left"],
                    successful=item["successful"],
                )
                if (
                    type(state.priority) is not int
                    or type(state.tries_left) is not int
                    or type(state.successful) is not bool
                    or not 0 <= state.priority <= MAX_PRIORITY
                    or not 0 <= state.tries_left <= 255
                ):
                    raise ValueError(f"slot {slot}: {item!r}")
                slots[slot] = state
            if set(record["slots"]) != set(SLOTS) or record["current"] not in SLOTS:
                raise ValueError("unknown slots")
            return cls(slots=slots, current=record["current"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StatefsError(errno.EBADMSG, f"bootctl record is malformed: {exc}") from None


def _check_slot(slot: str) -> None:
    if slot not in SLOTS:
        raise StatefsError(errno.EINVAL, f"unknown slot {slot!r} (slots: {', '.join(SLOTS)})")


def _other(slot: str) -> str:
    return "b" if slot == "a" else "a"
