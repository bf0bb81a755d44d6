"""Crash states of a write log: what the disk may hold after a power cut at any point.

The model of a disk is the one ``docs/storage/statefs.md`` argues against: a completed flush
makes every earlier write durable; writes since the last completed flush may each be persisted
or lost, in any combination, and a write may be torn (a multi-sector write persisted for only
some of its sectors; a single sector half old, half new). For every flush window of a
write log (:class:`~harness.crashsim.log.WriteLog`) this module yields:

* every prefix of the write sequence, at sector granularity (so every prefix of the whole
  log, across flushes, appears in exactly one window);
* every subset of the window's sector writes when there are at most ``exhaustive_up_to`` of
  them, a seeded sample otherwise (densities 1/2, 1/10, 9/10, and "all but one");
* every multi-sector write call torn as a unit (first/last sector only, all but first/last,
  each half, a few seeded subsets), on top of the writes issued before it;
* sectors torn inside, half old / half new, at several byte offsets, both ways round (new head
  on old tail, and old head on new tail), on top of the writes issued before them, plus a few
  seeded subsets with one torn sector.

Each state carries the model states acceptable for the crash-point range it is consistent
with, as the log says (a bare log knows none; a recording's commit marks do). States are
deduplicated per window (two ways of reaching the same bytes are one state, acceptable only
where both are), and represented as an overlay of changed sectors on the window's durable base
image, never as a full copy (read it through :class:`~harness.crashsim.overlay.OverlayDevice`).
"""

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from harness.crashsim.log import Window, Write, WriteLog

#: Byte offsets where the fast run tears a sector (those >= 64 scale with larger sectors):
#: inside a record's magic, inside its CRC, mid-sector, near the end.
FAST_TEAR_OFFSETS = (3, 8, 256, 504)
#: ... and where a deep run does: inside the magic, the CRC, the header, the payload, the end.
DEEP_TEAR_OFFSETS = (1, 3, 4, 8, 16, 31, 32, 33, 64, 128, 256, 384, 504, 511)


@dataclass(frozen=True)
class Depth:
    """How hard to look. ``level`` 1 is the fast default; each level adds seeds and samples.

    ``exhaustive_up_to``: windows with at most this many sector writes get every subset.
    ``samples``: seeded random subsets per larger window. ``torn_sectors``: at most this many
    sectors per window are torn at every offset (all of them in smaller windows).
    ``seeds``: how many seeds each workload runs with. ``scale``: workload length factor.
    """

    level: int = 1
    exhaustive_up_to: int = 10
    samples: int = 24
    torn_sectors: int = 6
    tear_offsets: tuple[int, ...] = FAST_TEAR_OFFSETS
    seeds: int = 1
    scale: int = 1

    @classmethod
    def at(cls, level: int) -> "Depth":
        """The knob behind ``--crash-depth`` / ``STATEFS_CRASH_DEPTH``."""
        if level < 1:
            raise ValueError(f"crash depth must be >= 1, got {level}")
        if level == 1:
            return cls()
        return cls(
            level=level,
            exhaustive_up_to=10 + min(level - 1, 2),
            samples=24 * level,
            torn_sectors=8 * level,
            tear_offsets=DEEP_TEAR_OFFSETS,
            seeds=level,
            scale=1 + (level - 1) // 2,
        )


@dataclass(frozen=True)
class CrashState:
    """One crash state: the window's durable base plus the sectors that differ from it."""

    label: str
    window: int
    base: bytes
    overlay: dict[int, bytes]
    allowed: frozenset[int]
    merged: int = 1  # how many generated states (labels) had exactly these bytes

    def image(self, sector_size: int) -> bytes:
        """The full device image (only for tests that want one; recovery uses the overlay)."""
        image = bytearray(self.base)
        for lba, data in self.overlay.items():
            image[lba * sector_size : (lba + 1) * sector_size] = data
        return bytes(image)


def _scaled(offset: int, sector_size: int) -> int:
    """Offsets inside a record header (< 64) stay put; the others scale with the sector, so a
    4096-byte sector also tears across its 512-byte blocks."""
    return offset if offset < 64 else min(sector_size - 1, offset * sector_size // 512)


def tear(old: bytes, new: bytes, offset: int, *, new_head: bool) -> bytes:
    """A sector torn at ``offset``: new bytes before it and old after (or the other way)."""
    return new[:offset] + old[offset:] if new_head else old[:offset] + new[offset:]


class _WindowStates:
    """Collects one window's states, deduplicated by their bytes.

    Per write position it keeps the sector's LBA, its new bytes and whether they equal the
    base already, so building a state costs one dict entry per persisted write that changes
    something (this runs hundreds of thousands of times a run)."""

    def __init__(self, log: WriteLog, window: Window, base: bytes):
        self.log = log
        self.window = window
        self.base = base
        self.ss = ss = log.sector_size
        events = log.events
        self.lbas = [events[index].lba for index in window.writes]
        self.datas = [events[index].data for index in window.writes]
        self.same = [
            data == base[lba * ss : (lba + 1) * ss]
            for lba, data in zip(self.lbas, self.datas, strict=True)
        ]
        self.by_bytes: dict[frozenset, list] = {}

    def base_sector(self, lba: int) -> bytes:
        return self.base[lba * self.ss : (lba + 1) * self.ss]

    def add(
        self, label: str, kept: tuple[int, ...], torn: tuple[int, int, bool] | None = None
    ) -> None:
        """``kept``: window positions persisted, in issue order; ``torn``: (position, offset,
        new_head) for one more write persisted only partly."""
        lbas, datas, same = self.lbas, self.datas, self.same
        overlay: dict[int, bytes] = {}
        last = max(kept) if kept else -1
        for position in kept:
            if same[position]:
                overlay.pop(lbas[position], None)  # back to the base bytes
            else:
                overlay[lbas[position]] = datas[position]
        if torn is not None:
            position, offset, new_head = torn
            lba = lbas[position]
            old = overlay.get(lba)
            base = self.base_sector(lba)
            torn_bytes = tear(base if old is None else old, datas[position], offset,
                              new_head=new_head)  # fmt: skip
            if torn_bytes == base:
                overlay.pop(lba, None)
            else:
                overlay[lba] = torn_bytes
            last = max(last, position)
        lo = self.window.start if last < 0 else self.window.writes[last] + 1
        allowed = self.log.allowed(lo, self.window.end)
        key = frozenset(overlay.items())
        entry = self.by_bytes.get(key)
        if entry is None:
            self.by_bytes[key] = [label, overlay, allowed, 1]
        else:
            entry[2] = entry[2] & allowed
            entry[3] += 1

    def states(self) -> Iterator[CrashState]:
        for label, overlay, allowed, merged in self.by_bytes.values():
            yield CrashState(label, self.window.index, self.base, overlay, allowed, merged)


def _bits(kept: tuple[int, ...], count: int) -> str:
    return "".join("1" if index in kept else "0" for index in range(count))


def _window_states(
    log: WriteLog, window: Window, base: bytes, depth: Depth, rng: random.Random
) -> Iterator[CrashState]:
    states = _WindowStates(log, window, base)
    count = len(window.writes)
    tag = f"w{window.index}"
    for size in range(count + 1):
        states.add(f"{tag} prefix {size}/{count}", tuple(range(size)))
    if count <= depth.exhaustive_up_to:
        for size in range(1, count):
            for kept in itertools.combinations(range(count), size):
                states.add(f"{tag} subset {_bits(kept, count)}", kept)
    else:
        for sample in range(depth.samples):
            density = (0.5, 0.1, 0.9)[sample % 3]
            kept = tuple(index for index in range(count) if rng.random() < density)
            states.add(f"{tag} sample {sample} (p={density}, {len(kept)}/{count} kept)", kept)
        for dropped in sorted(rng.sample(range(count), min(count, depth.samples // 2))):
            kept = tuple(index for index in range(count) if index != dropped)
            states.add(f"{tag} all but {dropped}/{count}", kept)
        _torn_calls(states, log, window, depth, rng, tag)
    _torn_sectors(states, window, depth, rng, tag)
    yield from states.states()


def _torn_calls(states, log, window, depth, rng, tag) -> None:
    """Multi-sector write calls persisted for only some of their sectors."""
    calls: dict[int, list[int]] = {}
    for position, event_index in enumerate(window.writes):
        calls.setdefault(log.events[event_index].call, []).append(position)
    multi = [positions for positions in calls.values() if len(positions) > 1]
    if len(multi) > depth.torn_sectors:
        multi = rng.sample(multi, depth.torn_sectors)
    for positions in multi:
        before = tuple(range(positions[0]))
        half = len(positions) // 2
        shapes = {
            "first only": positions[:1],
            "last only": positions[-1:],
            "all but first": positions[1:],
            "all but last": positions[:-1],
            "first half": positions[:half],
            "second half": positions[half:],
            "every other": positions[::2],
        }
        for sample in range(max(1, depth.samples // 8)):
            shapes[f"seeded {sample}"] = [p for p in positions if rng.random() < 0.5]
        call = log.events[window.writes[positions[0]]].call
        for shape, part in shapes.items():
            states.add(
                f"{tag} call {call} ({len(positions)} sectors) torn: {shape}",
                before + tuple(part),
            )


def _torn_sectors(states, window, depth, rng, tag) -> None:
    """Single sectors half old, half new, after the writes issued before them."""
    count = len(window.writes)
    if not count:
        return
    ss = states.ss
    offsets = sorted({_scaled(offset, ss) for offset in depth.tear_offsets})
    if count <= depth.torn_sectors:
        positions = list(range(count))
    else:
        positions = sorted({0, count - 1, *rng.sample(range(count), depth.torn_sectors - 2)})
    for position in positions:
        for offset in offsets:
            for new_head in (True, False):
                way = "new head" if new_head else "new tail"
                states.add(
                    f"{tag} prefix {position} + write {position} torn at byte {offset} ({way})",
                    tuple(range(position)),
                    (position, offset, new_head),
                )
    for sample in range(max(1, depth.samples // 8)):
        position = rng.randrange(count)
        kept = tuple(index for index in range(position) if rng.random() < 0.5)
        offset = rng.randrange(1, ss)
        states.add(
            f"{tag} seeded {sample}: {len(kept)} kept + write {position} torn at byte {offset}",
            kept,
            (position, offset, bool(rng.getrandbits(1))),
        )


def crash_states(log: WriteLog, depth: Depth, seed: int = 0) -> Iterator[CrashState]:
    """Every crash state of ``log`` at ``depth`` (deterministic for a given seed)."""
    durable = bytearray(log.initial)
    ss = log.sector_size
    rng = random.Random(seed)
    for window in log.windows():
        base = bytes(durable)
        yield from _window_states(log, window, base, depth, rng)
        for event_index in window.writes:
            write: Write = log.events[event_index]
            durable[write.lba * ss : (write.lba + 1) * ss] = write.data
