"""A guest's block log as a crash simulator recording, with the commit points of its workload.

The crash-state generator (:func:`harness.crashsim.crash_states`) works from a
:class:`~harness.crashsim.Recording`: sector writes, completed flushes, and commit marks that
say which store states a recovery may return at each crash point. The log gives the first two
(:func:`recording_from_log`); the marks come from the workload itself.

The power-cut workload (``guest/selftest/powercut.py``) writes one sequence number ``s`` per
synced batch, strictly one after the other: it prints ``issue s``, sends the batch, waits for
its sync and prints ``acked s`` before it issues ``s + 1``. Each batch's record holds the key
``/state/powercut/log/<s>``. So the first write in the log that carries the key of ``s`` is
the moment ``s`` was issued, and it proves ``s - 1`` was acknowledged. From there on the
recovered head must be ``s - 1`` or ``s``: the commit marks ``End(s - 1)``, ``Begin(s)`` go
right before that write. That is the issue's rule read off the disk: nothing acknowledged lost,
nothing beyond what was issued.

Why the key is looked for in the device image rather than in the write itself: a record can
straddle two requests (the page cache writes back pages), and the key can be split between
them; scanning the written range plus a sector either side of the image as it stands after the
write finds it in the second. Compactions copy live keys, but those are never newer than the
head, so they never move the mark.

Flags: a FUA write is logged as a write followed by a flush (that also makes the writes before
it durable, so it hides some states; Linux's virtio-blk never issues FUA). A discard becomes a
write of zeros (what the host's raw file reads back). A flush that carries data flushes first.
Marks are kept as labels and touch no sector.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from guest.statefs.layout import SUPERBLOCK_SLOTS, decode_superblock
from harness.crashlog.logformat import BlockLog, LogFormatError
from harness.crashsim import Flush, Recording, Write

#: The workload's log keys, and the width of their sequence number.
SEQ_KEY = re.compile(rb"/state/powercut/log/(\d{10})")


@dataclass
class GuestHistory:
    """A recording plus what the commit marks were derived from.

    ``heads[i]`` is the head of model state ``i`` (0: empty or unformatted, the state a blank
    disk recovers to, since statefsd formats it). ``issued`` is the highest sequence number
    found in the log; ``marks`` the log's MARK entries as (event position, text).
    """

    recording: Recording
    heads: list[int] = field(default_factory=list)
    issued: int = 0
    acked_end: int | None = None
    marks: list[tuple[int, str]] = field(default_factory=list)
    final_image: bytes = b""
    generations: set[int] = field(default_factory=set)

    @property
    def compactions(self) -> int:
        """Superblock generations written after the first (each compaction writes one)."""
        return max(0, len(self.generations) - 1)

    def allowed_heads(self, allowed: frozenset[int]) -> list[int]:
        return sorted(self.heads[state] for state in allowed)


class _Builder:
    def __init__(self, log: BlockLog, sector_count: int, initial: bytes | None) -> None:
        ss = log.sector_size
        image = bytes(ss * sector_count) if initial is None else initial
        self.recording = Recording(ss, sector_count, image, name="guest block log")
        self.history = GuestHistory(self.recording)
        self.image = bytearray(image)
        self._state_of: dict[int, int] = {}
        self._state(0, None)

    def _state(self, head: int, model: dict[str, bytes] | None) -> int:
        state = self.recording.add_state(model)
        if state == len(self.history.heads):
            self.history.heads.append(head)
        self._state_of[head] = state
        return state

    def head_state(self, head: int) -> int:
        if head == 0:
            return 0
        state = self._state_of.get(head)
        if state is None:
            # A state per head: the model only names the head (the workload's values follow
            # from it, and the judge checks them against the head it finds).
            state = self._state(head, {"head": str(head).encode("ascii")})
        return state

    def write(self, lba: int, data: bytes) -> None:
        ss = self.recording.sector_size
        self.image[lba * ss : lba * ss + len(data)] = data
        lo = max(0, lba - 1) * ss
        hi = min(len(self.image), lba * ss + len(data) + ss)
        newest = max((int(m.group(1)) for m in SEQ_KEY.finditer(self.image, lo, hi)), default=0)
        history = self.history
        if newest > history.issued:
            # s - 1 acknowledged (it was issued before s), s in flight.
            self.recording.end(self.head_state(newest - 1))
            self.recording.begin(self.head_state(newest), f"write {newest}")
            history.issued = newest
        self.recording.write(lba, data)
        for slot in range(lba, min(lba + len(data) // ss, SUPERBLOCK_SLOTS)):
            superblock, _ = decode_superblock(bytes(self.image[slot * ss : (slot + 1) * ss]))
            if superblock is not None:
                history.generations.add(superblock.generation)

    def entry(self, entry) -> None:
        ss = self.recording.sector_size
        if entry.is_mark:
            self.history.marks.append((len(self.recording.events), entry.mark))
            return
        if entry.is_flush:
            self.recording.flush()
        if entry.is_discard:
            self.write(entry.sector, bytes(entry.nr_sectors * ss))
        elif entry.is_write:
            self.write(entry.sector, entry.data)
            if entry.is_fua:
                self.recording.flush()


def recording_from_log(
    log: BlockLog,
    sector_count: int,
    *,
    initial: bytes | None = None,
    acked_end: int | None = None,
) -> GuestHistory:
    """The recording of a guest run from its block log (module docstring).

    ``initial``: the disk before the run (zeros by default: a blank disk). ``acked_end``: the
    last acknowledged sequence number the console showed; when the log ends on a flush after
    the write of exactly that number, its ``End`` mark closes the recording, so the states of
    the last window must hold it.
    """
    if initial is not None and len(initial) != log.sector_size * sector_count:
        raise LogFormatError(f"initial image is not {sector_count} sectors of {log.sector_size}")
    builder = _Builder(log, sector_count, initial)
    for entry in log.entries:
        if entry.sector + entry.nr_sectors > sector_count:
            raise LogFormatError(f"{entry.describe()}: beyond the disk's {sector_count} sectors")
        builder.entry(entry)
    history = builder.history
    history.acked_end = acked_end
    events = history.recording.events
    if acked_end is not None and acked_end == history.issued and events and _ends_flushed(events):
        history.recording.end(builder.head_state(acked_end))
    history.final_image = bytes(builder.image)
    return history


def _ends_flushed(events: list) -> bool:
    for event in reversed(events):
        if isinstance(event, Flush):
            return True
        if isinstance(event, Write):
            return False
    return False
