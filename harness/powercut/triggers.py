"""Where a cut lands: the trigger schedule, and the conditions of the triggers that aim at the
store's riskiest moments.

**The schedule** (:func:`trigger_for`). Not a coin toss: cycle 1 is always ``format`` (the
first boot of a campaign formats the blank disk), and the cycles after it take the other
triggers in turn, in an order the seed shuffles once. So any campaign of six cycles or more
cuts at least once at every trigger, and a campaign of ten does so with room to spare.

============ ==========================================================================
``format``   before the recovery marker of the first boot, while statefsd formats the blank
             disk: the moment its superblock writes are in the cache (or being flushed)
``recovery`` before the recovery marker of a later boot, while statefsd replays or seals:
             when its seal write reaches the cache, else when it reports its replay; the
             cycle before it keeps a torn or partial tail so a seal is needed
``compaction`` while the guest writes, in the middle of a compaction: the epoch
             reservation, the snapshot or the switch (seeded), each seen in the cache
``dirty``    after the delay, when the cache holds a seeded 1 to 4 writes (:class:`PendingProbe`)
``time``, ``flush``  as before (:mod:`harness.powercut.cut`)
============ ==========================================================================

A boot cut before its recovery marker wrote nothing of the workload: the cycle it judged stays
open, and the next boot that recovers judges both against the last writing boot's bounds.

**Seeing a compaction** (:class:`CompactionProbe`). The cache's pending journal lists every
write since the last flush, with its data; the backing file holds what is durable. A pending
write that changes a superblock sector (LBA 0 or 1) is a superblock write, which during the
workload happens only inside a compaction (first the epoch reservation, last the switch); one
that changes the first sector of a region is a snapshot's first record. The probe reads only
the journal's new bytes at each poll, so polling every half millisecond stays cheap.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

from harness.powercut.cut import CUT_TRIGGERS
from harness.powercut.journal import JOURNAL_HEADER_SIZE, JOURNAL_NAME, flush_in_progress
from harness.powercut.journal import journal_has_writes as _dirty

#: Cycle 1's trigger; the others, in turn after it.
FIRST_TRIGGER = "format"
ROTATION = ("recovery", "compaction", "flush", "dirty", "time")
TRIGGERS = (FIRST_TRIGGER, *ROTATION)
#: Before the recovery marker: these cut while statefsd starts, not while the guest writes.
EARLY_TRIGGERS = ("format", "recovery")
COMPACTION_STAGES = ("reserve", "snapshot", "switch")
#: Seconds a compaction cut waits for one (scaled); compactions come every few seconds.
COMPACTION_WAIT = 30.0
#: ``dirty`` waits for a seeded 1..this many pending writes (a batch is 1-5 requests).
MAX_DIRTY_PENDING = 4
SECTOR = 512
SUPERBLOCK_SLOTS = 2
_RECORD = struct.Struct("<QII")  # offset, length, crc32 (harness.powercut.journal)


def trigger_for(cycle: int, seed: int | str) -> str:
    """The trigger of ``cycle`` (1-based) of a campaign with ``seed``: see the module docstring."""
    if cycle == 1:
        return FIRST_TRIGGER
    order = list(ROTATION)
    random.Random(f"{seed}:trigger order").shuffle(order)
    return order[(cycle - 2) % len(order)]


def cache_written(state_dir: Path) -> bool:
    """Writes in the cache or a flush under way: the condition of the early triggers."""
    return _dirty(state_dir) or flush_in_progress(state_dir)


class _JournalTail:
    """Reads the pending journal's records appended since the last call (a flush replaces the
    journal with one of the next generation: then from its start again)."""

    def __init__(self, state_dir: Path) -> None:
        self.journal = state_dir / JOURNAL_NAME
        self._generation = b""
        self._offset = JOURNAL_HEADER_SIZE
        self.pending = 0  # complete records in the current journal

    def new_records(self) -> list[tuple[int, bytes]]:
        try:
            with open(self.journal, "rb") as handle:
                generation = handle.read(JOURNAL_HEADER_SIZE)[8:16]
                if generation != self._generation:
                    self._generation, self._offset, self.pending = (
                        generation,
                        JOURNAL_HEADER_SIZE,
                        0,
                    )
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        records, position = [], 0
        while position + _RECORD.size <= len(data):
            offset, length, _ = _RECORD.unpack_from(data, position)
            end = position + _RECORD.size + length
            if end > len(data):
                break  # the record is still being appended
            records.append((offset, data[position + _RECORD.size : end]))
            position = end
        self._offset += position
        self.pending += len(records)
        return records


class PendingProbe(_JournalTail):
    """True once the cache holds at least ``count`` writes (``dirty`` with several pending)."""

    def __init__(self, state_dir: Path, count: int) -> None:
        super().__init__(state_dir)
        self.count = count

    def __call__(self) -> bool:
        self.new_records()
        return self.pending >= self.count


class CompactionProbe(_JournalTail):
    """True once the pending journal shows the chosen ``stage`` of a compaction (module
    docstring). ``disk`` is the backing file (what is durable), ``sector_count`` its size."""

    def __init__(self, state_dir: Path, disk: Path, sector_count: int, stage: str) -> None:
        if stage not in COMPACTION_STAGES:
            raise ValueError(f"compaction stage must be one of {COMPACTION_STAGES}: {stage!r}")
        super().__init__(state_dir)
        self.disk = disk
        region = (sector_count - SUPERBLOCK_SLOTS) // 2
        self.region_starts = (SUPERBLOCK_SLOTS, SUPERBLOCK_SLOTS + region)
        self.stage = stage
        self.seen: list[str] = []  # superblock / region events, in order

    def __call__(self) -> bool:
        for offset, data in self.new_records():
            for event in self._classify(offset, data):
                self.seen.append(event)
                if self._reached():
                    return True
        return False

    def _reached(self) -> bool:
        seen = self.seen
        if self.stage == "reserve":
            return seen[-1] == "superblock"
        if self.stage == "snapshot":
            return seen[-1] == "region" and "superblock" in seen
        first = seen.index("superblock") if "superblock" in seen else len(seen)
        return seen[-1] == "superblock" and "region" in seen[first:]

    def _classify(self, offset: int, data: bytes) -> list[str]:
        first, count = offset // SECTOR, len(data) // SECTOR

        def changed(lbas) -> bool:
            return any(
                first <= lba < first + count and self._changes(lba, data, first) for lba in lbas
            )

        events = ["superblock"] if changed(range(SUPERBLOCK_SLOTS)) else []
        return events + (["region"] if changed(self.region_starts) else [])

    def _changes(self, lba: int, data: bytes, first: int) -> bool:
        new = data[(lba - first) * SECTOR : (lba - first + 1) * SECTOR]
        with open(self.disk, "rb") as handle:
            handle.seek(lba * SECTOR)
            return handle.read(SECTOR) != new


def writing_condition(
    trigger: str, state_dir: Path, disk: Path, rng: random.Random
) -> Callable[[], bool] | None:
    """The condition a writing-phase trigger waits for (None: cut at the moment)."""
    if trigger == "compaction":
        sector_count = disk.stat().st_size // SECTOR
        return CompactionProbe(state_dir, disk, sector_count, rng.choice(COMPACTION_STAGES))
    if trigger == "dirty":
        return PendingProbe(state_dir, rng.randint(1, MAX_DIRTY_PENDING))
    condition = CUT_TRIGGERS[trigger]
    return None if condition is None else (lambda: condition(state_dir))
