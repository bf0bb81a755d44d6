"""Replay of valid journals after damage: bit flips, zeroed sectors, sector swaps, truncations.

The journals come from real workloads (``support.journals``), so the fuzzer knows every value
each key ever had and every commit point. Whatever the damage, opening must end in a
:class:`StatefsError` or in a state made only of written values, within the replay bounds.
Where the damage is confined to the active region (compaction snapshot included), the state
must be a commit point at or after the first damaged byte (a prefix state: damage at the tail
loses at most the commits it hit, never reorders or mixes them, and damage inside a snapshot
is an error); damage confined to the inactive region must change nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from support.fuzzing import fuzz_settings, seed_decorator
from support.journals import Journal, journals
from support.replaycheck import (
    check_bounds,
    check_written,
    count_open,
    fsck_agrees,
    open_image,
)
from support.tally import Outcomes

KINDS = ("bit flips", "zeroed sectors", "sector swaps", "zeroed tail", "device truncated")


@dataclass
class Damage:
    """Which device bytes a mutation touched, for judging what replay may return."""

    touched: set[int] = field(default_factory=set)  # byte offsets (sector starts for sectors)
    sectors: set[int] = field(default_factory=set)
    truncated: bool = False


def _offset(draw, journal: Journal) -> int:
    """A device byte offset, aimed at the places where damage matters most."""
    size = len(journal.image)
    zone = draw(st.sampled_from(("journal", "journal", "tail", "superblocks", "inactive", "any")))
    if zone == "journal":
        return journal.active_start + draw(st.integers(0, max(0, journal.journal_end - 1)))
    if zone == "tail":
        start = journal.active_start + journal.snapshot_end
        return draw(st.integers(start, journal.active_start + journal.journal_end + 1023))
    if zone == "superblocks":
        return draw(st.integers(0, 2 * journal.sector_size - 1))
    if zone == "inactive":
        return journal.inactive_start + draw(st.integers(0, journal.region_bytes - 1))
    return draw(st.integers(0, size - 1))


class Case:
    """A damaged journal; its repr names the journal and the edits, so a failing example
    prints in one line instead of as a megabyte of image."""

    def __init__(self, journal: Journal, kind: str, image: bytes, damage: Damage, edits: list):
        self.journal, self.kind, self.image, self.damage = journal, kind, image, damage
        self.edits = edits

    def __repr__(self) -> str:
        return f"Case({self.journal.name!r}, {self.kind!r}, {self.edits})"


@st.composite
def damaged(draw) -> Case:
    journal = draw(st.sampled_from(journals()))
    kind = draw(st.sampled_from(KINDS))
    image = bytearray(journal.image)
    ss = journal.sector_size
    damage = Damage()
    edits: list[tuple[str, int, int]] = []
    if kind == "bit flips":
        for _ in range(draw(st.integers(1, 8))):
            offset, bit = _offset(draw, journal), draw(st.integers(0, 7))
            image[offset] ^= 1 << bit
            damage.sectors.add(offset // ss)
            edits.append(("flip byte, bit", offset, bit))
    elif kind == "zeroed sectors":
        for _ in range(draw(st.integers(1, 4))):
            lba = _offset(draw, journal) // ss
            image[lba * ss : (lba + 1) * ss] = bytes(ss)
            damage.sectors.add(lba)
            edits.append(("zero lba", lba, 1))
    elif kind == "sector swaps":
        for _ in range(draw(st.integers(1, 3))):
            a, b = _offset(draw, journal) // ss, _offset(draw, journal) // ss
            first, second = bytes(image[a * ss : (a + 1) * ss]), bytes(image[b * ss : (b + 1) * ss])
            image[a * ss : (a + 1) * ss], image[b * ss : (b + 1) * ss] = second, first
            if first != second:
                damage.sectors.update((a, b))
            edits.append(("swap lbas", a, b))
    elif kind == "zeroed tail":
        start = journal.active_start + draw(st.integers(0, journal.journal_end))
        end = journal.active_start + journal.region_bytes
        image[start:end] = bytes(end - start)
        damage.touched.add(start)
        damage.sectors.update(range(start // ss, end // ss))
        edits.append(("zero bytes from, to", start, end))
    else:
        keep = draw(st.integers(1, len(image) // ss - 1))
        del image[keep * ss :]
        damage.truncated = True
        edits.append(("keep sectors", keep, 0))
    damage.touched.update(lba * ss for lba in damage.sectors)
    return Case(journal, kind, bytes(image), damage, edits)


def judge(journal: Journal, kind: str, image: bytes, damage: Damage, opened) -> None:
    ss = journal.sector_size
    if damage.truncated:
        assert opened.error is not None, "a store on a truncated device opened"
        return
    assert opened.state is not None or opened.error is not None
    if opened.state is not None:
        check_written(opened.state, journal.history)
    active = range(journal.active_start, journal.active_start + journal.region_bytes)
    in_superblocks = any(offset < 2 * ss for offset in damage.touched)
    in_active = sorted(
        offset - journal.active_start for offset in damage.touched if offset in active
    )
    if in_superblocks:
        return  # an older superblock copy may win: any written state (checked above)
    if not in_active:
        assert opened.error is None, f"damage outside the journal broke it: {opened.error}"
        assert opened.state == journal.final, "damage outside the journal changed the state"
        return
    first = in_active[0]
    if opened.state is not None:
        allowed = journal.allowed_after(first)
        assert opened.state in allowed, (
            f"{kind} from journal byte {first}: state is not a commit point at or after it"
        )
    if kind == "zeroed tail" and first >= journal.snapshot_end:
        assert opened.error is None, f"a lost tail is a torn write, not damage: {opened.error}"


def test_replay_of_damaged_journals_is_an_error_or_a_written_state():
    outcomes = {kind: Outcomes("Fuzz", "journal replay (Store.open)", kind) for kind in KINDS}
    fsck_runs = Outcomes("Fuzz", "fsck (check_device)", "damaged journals (same inputs)")

    @fuzz_settings(300)
    @seed_decorator()
    @given(damaged())
    def run(case: Case) -> None:
        journal, kind, image, damage = case.journal, case.kind, case.image, case.damage
        opened = open_image(image, journal.sector_size)
        check_bounds(opened, len(image), journal.sector_size)
        judge(journal, kind, image, damage, opened)
        again = open_image(image, journal.sector_size)
        assert (again.state, str(again.error)) == (opened.state, str(opened.error)), (
            "replay is not deterministic"
        )
        count_open(outcomes[kind], opened)
        if not damage.truncated:
            fsck_agrees(image, journal.sector_size, opened)
            fsck_runs.count("agrees with open")

    run()
    for row in outcomes.values():
        row.note(f"{len(journals())} workload journals: " + ", ".join(j.name for j in journals()))
        row.commit()
    fsck_runs.commit()
