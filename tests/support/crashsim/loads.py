"""The crash workloads: scripted, seeded sequences of store operations.

Each one aims at a path where a crash could go wrong: small and large commit groups,
compaction (automatic by garbage ratio, forced by a full region, explicit, multi-record
snapshots), ENOSPC and ENOBUFS refusals, a torn tail sealed on reopen (also torn inside its
magic), the format of a blank device and a format over an old store, and 4096-byte sectors.
Devices are small (the smallest legal device is about 533 KiB at 512-byte sectors) and
compaction thresholds low, so journals stay short: that keeps each recovery cheap and makes
compaction frequent. ``scale`` (from the crash depth) lengthens them.
"""

import errno
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from guest.statefs import StoreConfig
from harness.crashsim.recording import UNFORMATTED

from support.crashsim.driver import (
    Driver,
    WorkloadError,
    keep_all_magic_torn,
    keep_first,
    keep_random,
    preformatted,
)

#: Low thresholds: compaction every few dozen records.
CHURN = StoreConfig(compact_min_bytes=12 * 1024, compact_garbage_ratio=2.0)
#: No garbage-ratio compaction on a small device: only a full region compacts.
FULL_REGION_ONLY = StoreConfig(compact_min_bytes=1 << 30, compact_garbage_ratio=4.0)


@dataclass(frozen=True)
class Workload:
    """A named script and the device it runs on."""

    name: str
    script: Callable[[Driver, int], None]
    about: str
    sector_size: int = 512
    sectors: int = 1100
    config: StoreConfig = field(default_factory=lambda: CHURN)
    #: Start from a formatted image (False: record the format of a blank device too).
    preformat: bool = True
    #: Driver notes the run must reach (so a workload cannot silently stop covering its path).
    expects: tuple[tuple[str, int], ...] = ()

    def run(self, seed: int, scale: int = 1) -> Driver:
        """Run the script on a fresh recording device; returns the driver (its segments)."""
        image, initial = b"", UNFORMATTED
        if self.preformat:
            seeds = random.Random(f"{self.name}/{seed}/format")
            image = preformatted(
                self.sector_size,
                self.sectors,
                volume_id=seeds.getrandbits(64),
                epoch=seeds.getrandbits(32),
                config=self.config,
            )
            initial = {}
        driver = Driver(
            self.name,
            seed,
            sector_size=self.sector_size,
            sectors=self.sectors,
            config=self.config,
            image=image,
            initial_state=initial,
        )
        if self.preformat:
            driver.reopen()
        self.script(driver, scale)
        driver.finish()
        return driver


def _keys(count: int) -> list[str]:
    return [f"/state/k{index}" if index % 3 else f"/state/dir/k{index}" for index in range(count)]


def small_groups(d: Driver, scale: int) -> None:
    """Many small commit groups of 1-3 puts/deletes (one sector, sometimes two to five);
    auto compaction every so often."""
    keys = _keys(12)
    for round_ in range(80 * scale):
        for _ in range(d.rng.randint(1, 3)):
            key = d.rng.choice(keys)
            if key in d.model and d.rng.random() < 0.25:
                d.delete(key)
            else:
                d.put(key, d.value(300, 1500) if round_ % 5 == 4 else d.value(0, 120))
        d.sync()


def large_groups(d: Driver, scale: int) -> None:
    """Multi-sector groups: 3-10 sectors (every subset is tried) and 12-60 sectors (sampled)."""
    keys = _keys(10)
    for round_ in range(6 * scale):
        for key in d.rng.sample(keys, 3):
            d.put(key, d.value(1200, 1450))  # 8-9 sectors: exhaustive
        d.sync()
        for key in d.rng.sample(keys, 2):
            d.put(key, d.value(500, 1900))
        d.sync()
        if round_ % 2:
            for key in d.rng.sample(keys, 4):
                d.put(key, d.value(2000, 7000))
            d.sync()
        if d.model and d.rng.random() < 0.5:
            d.delete(d.pick())
            d.sync()


def overwrite_churn(d: Driver, scale: int) -> None:
    """Overwrites of a few keys: the garbage ratio triggers compaction again and again, so the
    regions are reused and stale records of older epochs lie behind every journal's end."""
    keys = _keys(6)
    for _ in range(90 * scale):
        d.put(d.rng.choice(keys), d.value(40, 400))
        d.sync()


def full_region(d: Driver, scale: int) -> None:
    """No ratio trigger: the journal fills the whole region and the next sync compacts."""
    keys = _keys(8)
    for _ in range(10 * scale):
        for key in d.rng.sample(keys, 3):
            d.put(key, d.value(9000, 14000))
        d.sync()


def explicit_compact(d: Driver, scale: int) -> None:
    """``compact()``: with pending changes, with none, of an empty store, and of a live set
    larger than one record (a snapshot of several records, several write calls)."""
    keys = _keys(10)
    for _ in range(2 * scale):
        for key in keys[:4]:
            d.put(key, d.value(100, 800))
            d.sync()
        d.put(keys[5], d.value(10, 50))
        d.compact()  # commits the pending put too
        d.compact()  # nothing pending: still a full rewrite and switch
        for key in list(d.model):
            d.delete(key)
        d.compact()  # an empty snapshot
    for index in range(12):
        d.put(f"/state/big/{index:02d}", d.value(8000, 9000))
        if index % 3 == 2:
            d.sync()
    d.compact()  # ~100 KB live: a snapshot of two records


def enospc(d: Driver, scale: int) -> None:
    """Fill the store until ``put`` refuses with ENOSPC, then delete and overwrite, and fill
    again: compaction of a nearly full region, and refusals that must change nothing."""
    index = 0
    for _ in range(scale):
        while (refusal := d.put(f"/state/fill/{index:03d}", d.value(8000, 12000))) == 0:
            index += 1
            if index % 4 == 0:
                d.sync()
        if refusal != errno.ENOSPC:
            raise WorkloadError(f"filling the store was refused with {refusal}, not ENOSPC")
        d.sync()
        for key in d.rng.sample(sorted(d.model), 3):
            d.delete(key)
        d.sync()
        for _ in range(4):
            d.put(d.pick(), d.value(8000, 12000))
            d.sync()
        while d.put(f"/state/fill/{index:03d}", d.value(8000, 12000)) == 0:
            index += 1
        d.sync()
        for key in d.rng.sample(sorted(d.model), len(d.model) // 2):
            d.delete(key)
        d.sync()


def enobufs(d: Driver, scale: int) -> None:
    """One commit group grows until ENOBUFS (more than one record), then syncs: the largest
    possible record, and a refused batch that must change nothing."""
    for round_ in range(scale):
        index = 0
        while (refusal := d.put(f"/state/buf/{round_}/{index:02d}", d.value(3000, 4000))) == 0:
            index += 1
        over = [("/state/buf/over", bytes(60000)), ("/state/buf/over2", bytes(60000))]
        if refusal != errno.ENOBUFS or d.batch(over) != errno.ENOBUFS:
            raise WorkloadError("a commit group larger than one record was not refused")
        d.sync()
        for key in d.rng.sample(sorted(d.model), len(d.model) - 3):
            d.delete(key)
        d.sync()


def torn_tail(d: Driver, scale: int) -> None:
    """Crashes inside sync with the record half on disk, reopen (seal), and carry on.

    The first crash is the resurrection setup of the seal's design note: group K = {x, big}
    leaves only its header sector; the next group K' = {y, big} has the same layout, so its
    second sector equals K's. If K' were written over K's debris (no seal), a crash keeping
    only that sector would make K verify and bring ``/state/x`` back.
    """
    big = bytes(range(256)) * 3
    d.put("/state/base", b"b")
    d.sync()
    d.put("/state/x", b"1" * 10)
    d.put("/state/big", big)
    d.crash("sync", cut_after=1, keep=keep_first)
    d.put("/state/y", b"2" * 10)
    d.put("/state/big", big)
    d.sync()
    keys = _keys(8)
    for _ in range(3 * scale):
        for _ in range(d.rng.randint(1, 4)):
            d.put(d.rng.choice(keys), d.value(100, 1500))
        d.crash("sync", cut_after=1, keep=keep_random)
        for _ in range(3):
            d.put(d.rng.choice(keys), d.value(10, 300))
            d.sync()
    d.put(keys[0], d.value(100, 200))
    d.crash("compact", cut_after=d.rng.randint(0, 3), keep=keep_random)
    d.put(keys[1], d.value(100, 200))
    d.sync()


def reformat(d: Driver, scale: int) -> None:
    """A store with history, then a format over it (same epoch, new volume id), then writes:
    crashes in the format give the old store or the empty new one, never old records."""
    keys = _keys(6)
    for round_ in range(2 + scale):
        d.put(keys[round_ % len(keys)], d.value(100, 900))
        d.sync()
    d.compact()
    for key in keys:
        d.put(key, d.value(50, 400))
        d.sync()
    epoch = d.store.superblock.epoch
    d.format(epoch=epoch)
    for key in keys[:3]:
        d.put(key, d.value(50, 400))
        d.sync()


def random_mix(d: Driver, scale: int) -> None:
    """A seeded mix of everything: puts, deletes, batches, syncs, compactions, reopens."""
    keys = _keys(16)
    for _ in range(60 * scale):
        roll = d.rng.random()
        if roll < 0.45:
            d.put(d.rng.choice(keys), d.value(0, 2500))
        elif roll < 0.55 and d.model:
            d.delete(d.pick())
        elif roll < 0.62:
            d.batch([(key, d.value(0, 300)) for key in d.rng.sample(keys, 3)])
        elif roll < 0.9:
            d.sync()
        elif roll < 0.95:
            d.compact()
        else:
            d.reopen()


def big_sectors(d: Driver, scale: int) -> None:
    """4096-byte sectors: one-sector groups, multi-sector groups, compactions, a torn tail."""
    keys = _keys(8)
    for round_ in range(12 * scale):
        d.put(d.rng.choice(keys), d.value(10, 3000))
        if round_ % 4 == 3:
            d.put(d.rng.choice(keys), d.value(9000, 20000))
        d.sync()
    d.compact()
    d.put(keys[0], d.value(5000, 9000))
    d.crash("sync", cut_after=1, keep=keep_random)
    for key in keys[:3]:
        d.put(key, d.value(10, 500))
        d.sync()


def first_format(d: Driver, _scale: int) -> None:
    """Format a blank device, then one commit."""
    d.format()
    d.put("/state/a", b"1")
    d.sync()


def torn_magic(d: Driver, _scale: int) -> None:
    """The seal's resurrection setup again, but the first crash tears group K's header inside
    its magic (first byte old, the rest of K on disk): replay ends at "no record", and only a
    seal decided by the header's epoch and sequence number (not its magic) clears the debris.
    Without it, K' goes over K's debris with the same layout, and a tear of K' that brings
    only the magic back makes K verify."""
    big = bytes(range(256)) * 3
    d.put("/state/base", b"b")
    d.sync()
    d.put("/state/x", b"1" * 10)
    d.put("/state/big", big)
    d.crash("sync", cut_after=1, keep=keep_all_magic_torn)
    d.put("/state/y", b"2" * 10)
    d.put("/state/big", big)
    d.sync()


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "small-groups",
        small_groups,
        "one-sector groups, auto compaction",
        expects=(("compactions", 1),),
    ),
    Workload("large-groups", large_groups, "multi-sector groups", sectors=2048),
    Workload(
        "overwrite-churn",
        overwrite_churn,
        "garbage-ratio compaction, region reuse",
        expects=(("compactions", 3),),
    ),
    Workload(
        "full-region",
        full_region,
        "region-full compaction",
        config=FULL_REGION_ONLY,
        expects=(("compactions", 1),),
    ),
    Workload(
        "explicit-compact",
        explicit_compact,
        "compact(): pending, none, empty, multi-record",
        expects=(("compactions", 7),),
    ),
    Workload(
        "enospc",
        enospc,
        "fill to ENOSPC, delete, overwrite, refill",
        expects=(("ENOSPC", 2), ("compactions", 1)),
    ),
    Workload(
        "enobufs",
        enobufs,
        "largest commit group, refused batch",
        sectors=2048,
        expects=(("ENOBUFS", 2),),
    ),
    Workload(
        "torn-tail",
        torn_tail,
        "torn sync, seal on reopen, more writes",
        expects=(("crash_steps", 5), ("seals", 1)),
    ),
    Workload("reformat", reformat, "format over an old store (same epoch)"),
    Workload("random-mix", random_mix, "seeded mix of every operation"),
    Workload("first-format", first_format, "format of a blank device", preformat=False),
    Workload(
        "torn-magic",
        torn_magic,
        "torn sync with a header torn inside its magic, then more",
        expects=(("crash_steps", 1), ("seals", 1)),
    ),
    Workload(
        "sector-4096",
        big_sectors,
        "4096-byte sectors",
        sector_size=4096,
        sectors=160,
        expects=(("compactions", 1), ("crash_steps", 1)),
    ),
)

BY_NAME = {workload.name: workload for workload in WORKLOADS}
