"""The trigger schedule, the cut plan, and the probe that sees a compaction in the cache."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.powercut.cache import WriteBackCache
from harness.powercut.campaign import CampaignOptions
from harness.powercut.cut import plan_cut
from harness.powercut.triggers import (
    COMPACTION_STAGES,
    TRIGGERS,
    CompactionProbe,
    PendingProbe,
    cache_written,
    trigger_for,
)

SECTORS = 128  # regions start at LBA 2 and 65


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
@pytest.mark.parametrize("cycles", [6, 10, 25])
def test_every_campaign_of_six_cycles_or_more_cuts_at_every_trigger(seed: int, cycles: int):
    schedule = [trigger_for(n, seed) for n in range(1, cycles + 1)]
    assert schedule[0] == "format"
    assert set(schedule) == set(TRIGGERS)
    assert schedule.count("format") == 1
    assert schedule == [trigger_for(n, seed) for n in range(1, cycles + 1)]  # deterministic


def test_the_order_after_the_format_depends_on_the_seed():
    orders = {tuple(trigger_for(n, seed) for n in range(2, 7)) for seed in range(20)}
    assert len(orders) > 5


def test_cut_plans_are_deterministic_and_within_the_window():
    def cuts(seed: int) -> list:
        return [plan_cut(random.Random(f"{seed}:{n}:cut"), (0.5, 2.0), "flush") for n in range(30)]

    assert cuts(1) == cuts(1) and cuts(1) != cuts(2)
    assert all(0.5 <= plan.delay <= 2.0 and plan.trigger == "flush" for plan in cuts(1))


def test_shards_own_their_cycles_and_need_some():
    assert CampaignOptions(cycles=10, shard=(2, 3)).own_cycles == [2, 5, 8]
    with pytest.raises(ConfigError, match="no cycle"):
        CampaignOptions(cycles=2, shard=(3, 3))


@pytest.fixture
def cache(tmp_path: Path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(SECTORS * 512))
    state = tmp_path / "cache"
    state.mkdir()
    return disk, state, WriteBackCache(disk, state)


def sector(byte: int, count: int = 1) -> bytes:
    return bytes([byte]) * (512 * count)


def probe_sees(stage: str, writes, disk, state, cache) -> list[bool]:
    probe = CompactionProbe(state, disk, SECTORS, stage)
    seen = []
    for lba, data, flush in writes:
        cache.write(lba * 512, data)
        seen.append(probe())
        if flush:
            cache.flush()
    return seen


# An append in region 0 (rewrites page 0 with unchanged superblocks), then a compaction:
# reserve (superblock 1 changes), snapshot (region 1's first sector), switch (superblock 0).
COMPACTION = [
    (
        0,
        bytes(1024) + sector(5, 6),
        True,
    ),  # append: region 0's first sector, superblocks as they were
    (1, sector(9), True),  # reserve: superblock slot 1
    (65, sector(6, 8), False),  # snapshot: region 1's first sector
    (73, sector(6, 8), True),
    (0, sector(8), True),  # switch: superblock slot 0
]


@pytest.mark.parametrize(("stage", "fires_at"), [("reserve", 1), ("snapshot", 2), ("switch", 4)])
def test_the_probe_fires_at_its_stage_of_a_compaction(cache, stage: str, fires_at: int):
    disk, state, writer = cache
    seen = probe_sees(stage, COMPACTION, disk, state, writer)
    assert seen.index(True) == fires_at
    assert stage in COMPACTION_STAGES


def test_an_append_alone_is_not_a_compaction(cache):
    disk, state, writer = cache
    assert probe_sees("snapshot", COMPACTION[:1], disk, state, writer) == [False]
    assert not cache_written(state)  # the append was flushed


def test_a_bad_stage_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="stage"):
        CompactionProbe(tmp_path, tmp_path / "d", SECTORS, "middle")


def test_the_pending_probe_counts_writes_and_starts_over_at_a_flush(cache):
    _, state, writer = cache
    probe = PendingProbe(state, 3)
    seen = []
    for lba in (10, 20, 30):
        writer.write(lba * 512, sector(1))
        seen.append(probe())
    assert seen == [False, False, True]
    writer.flush()
    writer.write(40 * 512, sector(2))
    assert not probe() and probe.pending == 1
