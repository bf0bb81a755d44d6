"""WriteBackCache without nbdkit: overlay reads, journaled writes, flush, and every way a flush
can be interrupted (a checkpoint raises where a SIGKILL could land), resolved offline."""

import random
from pathlib import Path

import pytest
from powercut_helpers import pattern

from harness.powercut.cache import FLUSH_STEPS, WriteBackCache, require_resolved
from harness.powercut.errors import PowerCutError, UnresolvedCache
from harness.powercut.fates import resolve
from harness.powercut.journal import JOURNAL_NAME, UNDO_NAME, read_journal, read_undo


class SigKill(Exception):
    """Stands for the SIGKILL that stops the plugin at a checkpoint."""


def stop_at(target: str):
    def checkpoint(step: str) -> None:
        if step == target:
            raise SigKill(step)

    return checkpoint


def test_writes_are_visible_to_reads_but_not_in_the_backing_file(backing, state_dir, read_backing):
    original = backing.read_bytes()
    cache = WriteBackCache(backing, state_dir)
    cache.write(1024, pattern(0xAA, 1024))
    cache.write(1536, pattern(0xBB, 512))  # overlaps the second half: the later write wins
    assert (
        cache.read(512, 2048)
        == original[512:1024] + pattern(0xAA, 512) + pattern(0xBB, 512) + original[2048:2560]
    )
    assert backing.read_bytes() == original
    journal = read_journal(state_dir / JOURNAL_NAME)
    assert [(w.offset, len(w.data)) for w in journal.writes] == [(1024, 1024), (1536, 512)]
    cache.close()


def test_flush_applies_in_order_and_empties_the_journal(backing, state_dir, read_backing):
    cache = WriteBackCache(backing, state_dir)
    cache.write(1024, pattern(0xAA, 1024))
    cache.write(1536, pattern(0xBB, 512))
    assert cache.flush() == 2
    assert read_backing(1024, 1024) == pattern(0xAA, 512) + pattern(0xBB, 512)
    journal = read_journal(state_dir / JOURNAL_NAME)
    assert (journal.generation, journal.writes) == (2, ())
    assert not (state_dir / UNDO_NAME).exists()
    assert cache.flush() == 0  # nothing pending: nothing to do
    cache.close()


def test_a_flush_passes_every_checkpoint_in_order(backing, state_dir):
    steps: list[str] = []
    cache = WriteBackCache(backing, state_dir, checkpoint=steps.append)
    cache.write(0, pattern(0xAA, 512))
    cache.write(512, pattern(0xBB, 512))
    cache.flush()
    cache.close()
    expected = []
    for step in FLUSH_STEPS:
        expected += ["apply:0", "apply:1"] if step == "apply:<i>" else [step]
    assert steps == expected


def test_requests_outside_the_disk_are_refused(backing, state_dir):
    cache = WriteBackCache(backing, state_dir)
    with pytest.raises(PowerCutError, match="outside"):
        cache.write(cache.size - 100, bytes(512))
    with pytest.raises(PowerCutError, match="outside"):
        cache.read(cache.size, 1)
    cache.close()


def test_a_full_cache_writes_back_by_itself(backing, state_dir, read_backing):
    cache = WriteBackCache(backing, state_dir, cache_limit=4096)
    for index in range(8):
        cache.write(index * 1024, pattern(0x10 + index, 1024))
    assert cache.flushes == 1
    assert read_backing(0, 1024) == pattern(0x10, 1024)
    assert len(cache.pending) == 3  # 5 x 1 KiB went over the limit, 3 more came after
    cache.close()


@pytest.mark.parametrize(
    "leftover", [JOURNAL_NAME, UNDO_NAME, JOURNAL_NAME + ".tmp", UNDO_NAME + ".tmp"]
)
def test_refuses_to_start_on_an_unresolved_cut(backing, state_dir, leftover):
    (state_dir / leftover).write_bytes(b"x")
    with pytest.raises(UnresolvedCache, match=leftover) as caught:
        WriteBackCache(backing, state_dir)
    assert caught.value.paths == (str(state_dir / leftover),)
    with pytest.raises(UnresolvedCache):
        require_resolved(state_dir)


def test_a_closed_cache_leaves_its_writes_for_the_offline_resolution(backing, state_dir):
    cache = WriteBackCache(backing, state_dir)
    cache.write(0, pattern(0xCC, 512))
    cache.close()
    with pytest.raises(UnresolvedCache):
        WriteBackCache(backing, state_dir)
    resolution = resolve(state_dir, backing, random.Random(0), kinds=("subset",))
    assert resolution.pending == 1
    WriteBackCache(backing, state_dir).close()  # resolved: starts again


UNCOMMITTED = ["begin", "undo-saved", "apply:0", "apply:1", "apply:2", "synced"]


def interrupted_flush(backing: Path, state_dir: Path, step: str) -> tuple[bytes, bytes]:
    """Flush three writes (one flushed earlier, so the undo has real old data) and stop at
    ``step``; returns the backing file's bytes before and after a complete flush."""
    cache = WriteBackCache(backing, state_dir)
    cache.write(0, pattern(0x01, 1024))
    cache.flush()
    before = backing.read_bytes()
    cache.close()
    expected = bytearray(before)
    expected[0:1536] = pattern(0x02, 1536)
    expected[4096:4608] = pattern(0x03, 512)
    expected[512:1024] = pattern(0x04, 512)
    resolve(state_dir, backing, random.Random(0))  # nothing pending: just clears the files
    cache = WriteBackCache(backing, state_dir, checkpoint=stop_at(step))
    cache.write(0, pattern(0x02, 1536))
    cache.write(4096, pattern(0x03, 512))
    cache.write(512, pattern(0x04, 512))
    with pytest.raises(SigKill):
        cache.flush()
    cache.close()
    return before, bytes(expected)


@pytest.mark.parametrize("step", UNCOMMITTED)
def test_a_flush_interrupted_before_its_commit_is_rolled_back(backing, state_dir, step):
    before, _ = interrupted_flush(backing, state_dir, step)
    assert (state_dir / UNDO_NAME).exists() == (step != "begin")
    resolution = resolve(state_dir, backing, random.Random(0), kinds=("drop",))
    assert resolution.flush.rolled_back == (step != "begin")
    assert resolution.pending == 3  # the interrupted flush's writes are still pending
    assert resolution.plan.kind == "drop"
    assert backing.read_bytes() == before
    assert list(state_dir.iterdir()) == []


@pytest.mark.parametrize("step", UNCOMMITTED)
def test_after_a_rollback_the_fate_decides_the_flush_writes(backing, state_dir, step):
    _, complete = interrupted_flush(backing, state_dir, step)
    resolution = resolve(state_dir, backing, random.Random(3), kinds=("subset",))
    kept = resolution.plan.kept
    data = backing.read_bytes()
    assert (data[4096:4608] == pattern(0x03, 512)) == (1 in kept)
    if kept == (0, 1, 2):
        assert data == complete


@pytest.mark.parametrize("step", ["committed", "done"])
def test_a_committed_flush_is_kept_whole(backing, state_dir, step):
    _, complete = interrupted_flush(backing, state_dir, step)
    assert (state_dir / UNDO_NAME).exists() == (step == "committed")
    if step == "committed":
        journal = read_journal(state_dir / JOURNAL_NAME)
        assert journal.generation == read_undo(state_dir / UNDO_NAME).generation + 1
    resolution = resolve(state_dir, backing, random.Random(0), kinds=("drop",))
    assert not resolution.flush.rolled_back
    assert resolution.flush.undo_found == (step == "committed")
    assert resolution.pending == 0
    assert resolution.plan.kind == "none"
    assert backing.read_bytes() == complete


def test_the_undo_record_holds_the_bytes_before_the_flush(backing, state_dir):
    before, _ = interrupted_flush(backing, state_dir, "apply:1")
    undo = read_undo(state_dir / UNDO_NAME)
    assert [(e.offset, e.data) for e in undo.extents] == [
        (0, before[0:1536]),
        (4096, before[4096:4608]),
        (512, before[512:1024]),
    ]
