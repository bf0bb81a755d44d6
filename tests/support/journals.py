"""Valid journals built by real workloads, with the model the fuzzers judge replay against.

A fuzzer that damages a journal needs to know what an honest replay may return. The workload
here drives a real :class:`Store` with a seeded random mix of puts, deletes, batches, syncs
and compactions and keeps, next to the device image:

* ``history``: every value ever put for each key, so any recovered pair can be checked to be
  something the workload wrote (never invented or altered bytes);
* ``commits``: the commit points of the active region since its last compaction, each with the
  journal offset where its record ends and the state after it, so damage at or after an offset
  can be checked to give one of the states committed at or after it (a prefix state);
* where the regions and superblocks lie, so damage can be aimed and classified.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field

from guest.statefs import MemoryBlockDevice, Store, StoreConfig
from guest.statefs.superblock import choose, read_slots

VOLUME_ID = 0x0DDB_A11_5EED
EPOCH = 41


@dataclass(frozen=True)
class Journal:
    """A device image with its workload's model."""

    name: str
    image: bytes = field(repr=False)
    sector_size: int = field(repr=False)
    history: dict[str, frozenset[bytes]] = field(repr=False)
    #: (journal end offset after the commit, state) for each commit point of the active region,
    #: oldest first; the first is the compaction snapshot (or the empty store after format).
    commits: tuple[tuple[int, dict[str, bytes]], ...] = field(repr=False)
    active_start: int  # byte offset of the active region on the device
    inactive_start: int
    region_bytes: int
    current_slot: int

    @property
    def final(self) -> dict[str, bytes]:
        return self.commits[-1][1]

    @property
    def snapshot_end(self) -> int:
        """Journal offset where the snapshot (or nothing, after a format) ends."""
        return self.commits[0][0]

    @property
    def journal_end(self) -> int:
        return self.commits[-1][0]

    def allowed_after(self, offset: int) -> list[dict[str, bytes]]:
        """States an honest replay may return when journal bytes before ``offset`` are intact:
        the last commit whose record ends at or before ``offset``, or any later one (any commit,
        for damage inside the snapshot, which is then either harmless padding or an error)."""
        floor = max(
            (index for index, (end, _) in enumerate(self.commits) if end <= offset), default=0
        )
        return [state for _, state in self.commits[floor:]]


def _value(rng: random.Random, big: bool) -> bytes:
    size = rng.choice((0, 1, 7, 100, 600, 1500, 5000 if big else 300))
    return rng.randbytes(size)


def build_journal(
    name: str,
    *,
    seed: int,
    steps: int,
    sector_size: int = 512,
    sector_count: int = 1100,
    keys: int = 12,
    compact_min_bytes: int = 1 << 30,
    big_values: bool = False,
) -> Journal:
    """Run a seeded workload on a fresh store and return the image with its model."""
    rng = random.Random(seed)
    dev = MemoryBlockDevice(sector_size, sector_count)
    config = StoreConfig(compact_min_bytes=compact_min_bytes, compact_garbage_ratio=2.0)
    store = Store.format(dev, config, volume_id=VOLUME_ID, epoch=EPOCH)
    names = [f"/state/k{index}" for index in range(keys)] + ["/state/dir/a", "/state/dir/b/c"]
    history: dict[str, set[bytes]] = {}
    model: dict[str, bytes] = {}
    commits: list[tuple[int, dict[str, bytes]]] = [(0, {})]

    def put(key: str, value: bytes) -> None:
        history.setdefault(key, set()).add(value)
        model[key] = value

    for _ in range(steps):
        choice = rng.random()
        key = rng.choice(names)
        if choice < 0.45:
            value = _value(rng, big_values)
            store.put(key, value)
            put(key, value)
        elif choice < 0.6 and key in model:
            store.delete(key)
            del model[key]
        elif choice < 0.7:
            batch: list[tuple[str, bytes | None]] = []
            for batch_key in rng.sample(names, 3):
                if batch_key in model and rng.random() < 0.3:
                    batch.append((batch_key, None))
                    del model[batch_key]
                else:
                    value = _value(rng, big_values)
                    batch.append((batch_key, value))
                    put(batch_key, value)
            store.write_batch(batch)
        if rng.random() < 0.3 or store.pending_ops > 20:
            compactions = store.counters["compactions"]
            store.sync()
            state = dict(model)
            end = store.stats()["journal_bytes"]
            if store.counters["compactions"] != compactions:
                commits = [(end, state)]
            elif end != commits[-1][0]:
                commits.append((end, state))
    store.sync()
    end = store.stats()["journal_bytes"]
    if commits[-1][0] != end:
        commits.append((end, dict(model)))
    sb = store.superblock
    journal = Journal(
        name=name,
        image=bytes(dev.data),
        sector_size=sector_size,
        history={key: frozenset(values) for key, values in history.items()},
        commits=tuple(commits),
        active_start=sb.region_start(sb.active_region) * sector_size,
        inactive_start=sb.region_start(1 - sb.active_region) * sector_size,
        region_bytes=sb.region_bytes,
        current_slot=choose(read_slots(dev)).slot,
    )
    store.close(sync=False)
    return journal


@functools.cache
def journals() -> tuple[Journal, ...]:
    """The fixed set of journals the mutation fuzzer damages (built once per process)."""
    return (
        build_journal("appends", seed=1, steps=120),
        build_journal("churn+compaction", seed=2, steps=400, compact_min_bytes=16 * 1024),
        build_journal("big values", seed=3, steps=80, big_values=True),
        build_journal("4K sectors", seed=4, steps=150, sector_size=4096, sector_count=160),
    )


class SharedDisk:
    """A memory disk that outlives the devices opened on it (statefsd's REOPEN opens anew)."""

    def __init__(self, sector_size: int = 512, sector_count: int = 2048) -> None:
        self.sector_size = sector_size
        self.sector_count = sector_count
        self.data = bytearray(sector_size * sector_count)

    def open(self) -> MemoryBlockDevice:
        dev = MemoryBlockDevice(self.sector_size, 1)
        dev.sector_count = self.sector_count
        dev.data = self.data
        return dev
