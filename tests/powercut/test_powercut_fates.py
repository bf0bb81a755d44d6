"""The fates of pending writes: deterministic by seed, applied in order, torn at 512 bytes."""

import random

import pytest
from powercut_helpers import pattern

from harness.powercut.cache import WriteBackCache
from harness.powercut.errors import CacheFormatError
from harness.powercut.fates import (
    FATES,
    SECTOR,
    plan_fate,
    resolve,
    sector_pieces,
)
from harness.powercut.journal import JOURNAL_NAME, UNDO_NAME, Extent, encode_undo

PENDING = [
    Extent(0, pattern(0x11, 4096)),
    Extent(8192, pattern(0x22, 512)),
    Extent(2048, pattern(0x33, 2048)),  # over the end of the first: order matters
    Extent(16384 + 100, pattern(0x44, 1000)),  # not sector aligned
    Extent(32768, pattern(0x55, 512 * 6)),
]


def plans(seed: int, kinds=FATES, count: int = 50):
    return [plan_fate(PENDING, random.Random(f"{seed}:{i}"), kinds) for i in range(count)]


def test_the_same_seed_gives_the_same_fates():
    assert plans(7) == plans(7)
    assert plans(7) != plans(8)


def test_every_fate_is_chosen_from_a_seeded_stream():
    kinds = {plan.kind for plan in plans(1)}
    assert kinds == set(FATES)


def test_nothing_pending_is_fate_none():
    plan = plan_fate([], random.Random(0))
    assert (plan.kind, plan.pending, plan.writes) == ("none", 0, ())


def test_drop_keeps_nothing():
    plan = plan_fate(PENDING, random.Random(0), kinds=("drop",))
    assert plan.kind == "drop"
    assert plan.writes == ()
    assert plan.describe() == "drop"


def test_subset_keeps_whole_writes_in_their_original_order():
    for plan in plans(2, kinds=("subset",)):
        assert plan.kind == "subset"
        assert list(plan.kept) == sorted(plan.kept)
        assert plan.writes == tuple(PENDING[i] for i in plan.kept)
        assert plan.describe() == f"subset {len(plan.kept)}/{len(PENDING)}"
    sizes = {len(plan.kept) for plan in plans(2, kinds=("subset",))}
    assert max(sizes) > min(sizes)  # not always the same count


def test_torn_writes_tear_at_512_byte_granularity():
    for plan in plans(3, kinds=("torn",)):
        assert plan.kind == "torn"
        torn = PENDING[plan.torn_index]
        pieces = sector_pieces(torn)
        assert plan.torn_total == len(pieces) >= 2
        assert 1 <= len(plan.torn_sectors) < plan.torn_total  # some, never all or none
        whole = plan.writes[: len(plan.kept)]
        assert whole == tuple(PENDING[i] for i in plan.kept)
        assert all(i < plan.torn_index for i in plan.kept)  # nothing after the torn one
        for piece, index in zip(plan.writes[len(plan.kept) :], plan.torn_sectors, strict=True):
            assert piece == pieces[index]
            assert piece.offset % SECTOR == 0 or piece.offset == torn.offset
            assert piece.end % SECTOR == 0 or piece.end == torn.end
            assert piece.offset // SECTOR == (piece.end - 1) // SECTOR  # within one sector


def test_sector_pieces_split_at_absolute_boundaries():
    pieces = sector_pieces(Extent(300, bytes(range(256)) * 4))  # 300 .. 1324
    assert [(p.offset, p.end) for p in pieces] == [(300, 512), (512, 1024), (1024, 1324)]
    assert b"".join(p.data for p in pieces) == bytes(range(256)) * 4


def test_torn_without_a_multi_sector_write_falls_back_to_drop():
    plan = plan_fate([Extent(512, bytes(512))], random.Random(0), kinds=("torn",))
    assert plan.kind == "drop"


def test_unknown_fates_are_refused():
    with pytest.raises(ValueError, match="fates"):
        plan_fate(PENDING, random.Random(0), kinds=("melt",))


def test_resolve_applies_the_plan_to_the_backing_file(backing, state_dir):
    original = backing.read_bytes()
    cache = WriteBackCache(backing, state_dir)
    for write in PENDING:
        cache.write(write.offset, write.data)
    cache.close()
    resolution = resolve(state_dir, backing, random.Random(11), kinds=("torn",))
    plan = resolution.plan
    expected = bytearray(original)
    for write in plan.writes:
        expected[write.offset : write.end] = write.data
    assert backing.read_bytes() == bytes(expected)
    assert resolution.pending == len(PENDING)
    assert resolution.pending_bytes == sum(len(w.data) for w in PENDING)
    assert resolution.describe() == plan.describe()
    assert list(state_dir.iterdir()) == []


def test_resolve_twice_with_the_same_seed_gives_the_same_disk(tmp_path, backing, state_dir):
    disks = []
    for attempt in range(2):
        disk = tmp_path / f"copy{attempt}.img"
        disk.write_bytes(backing.read_bytes())
        cache = WriteBackCache(disk, state_dir)
        for write in PENDING:
            cache.write(write.offset, write.data)
        cache.close()
        resolve(state_dir, disk, random.Random("seed 5"))
        disks.append(disk.read_bytes())
    assert disks[0] == disks[1]


def test_an_undo_record_from_another_generation_is_an_error(backing, state_dir):
    WriteBackCache(backing, state_dir).close()  # journal of generation 1
    (state_dir / UNDO_NAME).write_bytes(encode_undo(5, [Extent(0, bytes(512))]))
    with pytest.raises(CacheFormatError, match="generation 5"):
        resolve(state_dir, backing, random.Random(0))


def test_an_undo_record_without_a_journal_is_an_error(backing, state_dir):
    (state_dir / UNDO_NAME).write_bytes(encode_undo(1, [Extent(0, bytes(512))]))
    assert not (state_dir / JOURNAL_NAME).exists()
    with pytest.raises(CacheFormatError, match="without"):
        resolve(state_dir, backing, random.Random(0))
