"""After the cut, offline: finish the dead server's story and decide what reached the media.

:func:`resolve` runs on the cache's state directory once nbdkit is dead, before the disk is
served again:

1. **An unfinished flush is rolled back.** An undo record with the journal's generation means
   the flush never committed (QEMU was never told it finished), so its old bytes go back into
   the backing file. One a generation behind belongs to a committed flush: discarded.
2. **The pending writes get a fate**, chosen with a seeded ``random.Random``, so the same journal
   and seed always give the same disk:

   ``drop``    none of them reached the media;
   ``subset``  each one independently did or did not, applied in their original order (a
               later write over the same sectors still wins when both are kept);
   ``torn``    one write that spans several 512-byte sectors persisted for only some of its
               sectors (at least one, not all), the writes before it as a random subset, and
               none after it. Offered only when such a write is pending.

   With nothing pending the fate is ``none``.
3. The chosen writes are applied and fdatasynced, and the journal, undo and temporary files
   are deleted, so the next server starts clean (it refuses otherwise).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.powercut.errors import CacheFormatError
from harness.powercut.journal import (
    JOURNAL_NAME,
    UNDO_NAME,
    Extent,
    JournalContents,
    leftovers,
    read_journal,
    read_undo,
    remove_files,
    write_all,
)

log = logging.getLogger(__name__)

#: The granularity of a torn write: the smallest unit a disk writes whole.
SECTOR = 512
FATES: tuple[str, ...] = ("drop", "subset", "torn")
#: Probability that ``subset`` (and ``torn``, for the writes before the torn one) keeps a write.
KEEP_PROBABILITY = 0.5


@dataclass(frozen=True)
class FlushRecovery:
    """What step 1 found: an undo record, and whether it was rolled back."""

    undo_found: bool = False
    rolled_back: bool = False
    extents: int = 0


@dataclass(frozen=True)
class FatePlan:
    """The decision for one set of pending writes; ``writes`` are applied in order.

    ``kept`` are indices of whole pending writes kept; for ``torn``, ``torn_index`` is the torn
    write and ``torn_sectors`` the indices (within it) of the sectors that persisted, out of
    ``torn_total``.
    """

    kind: str
    pending: int
    kept: tuple[int, ...] = ()
    torn_index: int | None = None
    torn_sectors: tuple[int, ...] = ()
    torn_total: int = 0
    writes: tuple[Extent, ...] = ()

    def describe(self) -> str:
        if self.kind == "subset":
            return f"subset {len(self.kept)}/{self.pending}"
        if self.kind == "torn":
            return (
                f"torn #{self.torn_index} {len(self.torn_sectors)}/{self.torn_total}s"
                f" +{len(self.kept)}"
            )
        return self.kind


@dataclass(frozen=True)
class Resolution:
    """Everything :func:`resolve` found and did, for the report."""

    flush: FlushRecovery
    pending: int
    pending_bytes: int
    torn_tail_bytes: int
    plan: FatePlan

    def describe(self) -> str:
        text = self.plan.describe()
        return f"{text} +rollback" if self.flush.rolled_back else text


def sector_pieces(write: Extent, sector: int = SECTOR) -> list[Extent]:
    """``write`` split at the disk's sector boundaries (absolute, not relative to the write)."""
    pieces = []
    pos = write.offset
    while pos < write.end:
        cut = min(write.end, (pos // sector + 1) * sector)
        pieces.append(Extent(pos, write.data[pos - write.offset : cut - write.offset]))
        pos = cut
    return pieces


def _keep_some(indices: range, rng: random.Random) -> tuple[int, ...]:
    return tuple(i for i in indices if rng.random() < KEEP_PROBABILITY)


def plan_fate(
    pending: Sequence[Extent], rng: random.Random, kinds: Sequence[str] = FATES
) -> FatePlan:
    """Choose the fate of ``pending`` (journal order) with ``rng``; see the module docstring.

    ``kinds`` limits the choice (``torn`` without a multi-sector write is left out, and falls
    back to ``drop`` when it was the only kind allowed); the result depends only on
    ``pending``, ``kinds`` and ``rng``'s state.
    """
    unknown = set(kinds) - set(FATES)
    if unknown or not kinds:
        raise ValueError(f"fates must be a non-empty subset of {FATES}, got {tuple(kinds)}")
    if not pending:
        return FatePlan("none", 0)
    tearable = [i for i, write in enumerate(pending) if len(sector_pieces(write)) >= 2]
    choices = [k for k in FATES if k in kinds and (k != "torn" or tearable)]
    if not choices:
        choices = ["drop"]  # only ``torn`` was allowed, and nothing pending can tear
    kind = rng.choice(choices)
    if kind == "drop":
        return FatePlan("drop", len(pending))
    if kind == "subset":
        kept = _keep_some(range(len(pending)), rng)
        return FatePlan("subset", len(pending), kept=kept, writes=tuple(pending[i] for i in kept))
    torn = rng.choice(tearable)
    kept = _keep_some(range(torn), rng)
    pieces = sector_pieces(pending[torn])
    count = rng.randint(1, len(pieces) - 1)
    sectors = tuple(sorted(rng.sample(range(len(pieces)), count)))
    writes = tuple(pending[i] for i in kept) + tuple(pieces[s] for s in sectors)
    return FatePlan(
        "torn",
        len(pending),
        kept=kept,
        torn_index=torn,
        torn_sectors=sectors,
        torn_total=len(pieces),
        writes=writes,
    )


def _apply(backing: Path, extents: Sequence[Extent]) -> None:
    if not extents:
        return
    fd = os.open(backing, os.O_WRONLY)
    try:
        for extent in extents:
            write_all(fd, extent.data, extent.offset)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def recover_flush(state_dir: Path, backing: Path) -> FlushRecovery:
    """Step 1: roll back a flush that did not commit (see the module docstring)."""
    undo_path = state_dir / UNDO_NAME
    if not undo_path.exists():
        return FlushRecovery()
    undo = read_undo(undo_path)
    journal_path = state_dir / JOURNAL_NAME
    if not journal_path.exists():
        raise CacheFormatError(f"{undo_path} exists without {journal_path}")
    generation = read_journal(journal_path).generation
    if generation == undo.generation:
        # Restoring every saved extent gives the pre-flush bytes whatever the order: each was
        # read before the flush wrote anything.
        _apply(backing, undo.extents)
        log.info("rolled back an unfinished flush of %d extents", len(undo.extents))
        return FlushRecovery(undo_found=True, rolled_back=True, extents=len(undo.extents))
    if generation == undo.generation + 1:
        return FlushRecovery(undo_found=True, rolled_back=False, extents=len(undo.extents))
    raise CacheFormatError(
        f"{undo_path} is of generation {undo.generation} but the journal of {generation}"
    )


def resolve(
    state_dir: Path, backing: Path, rng: random.Random, kinds: Sequence[str] = FATES
) -> Resolution:
    """Steps 1-3 of the module docstring, on a dead server's state directory."""
    flush = recover_flush(state_dir, backing)
    journal_path = state_dir / JOURNAL_NAME
    contents = read_journal(journal_path) if journal_path.exists() else JournalContents(0, ())
    plan = plan_fate(contents.writes, rng, kinds)
    _apply(backing, plan.writes)
    remove_files(leftovers(state_dir))
    resolution = Resolution(
        flush=flush,
        pending=len(contents.writes),
        pending_bytes=sum(len(w.data) for w in contents.writes),
        torn_tail_bytes=contents.torn_tail_bytes,
        plan=plan,
    )
    log.info(
        "resolved the cut: %s of %d pending (%d bytes; torn journal tail: %d bytes)",
        resolution.describe(),
        resolution.pending,
        resolution.pending_bytes,
        resolution.torn_tail_bytes,
    )
    return resolution
