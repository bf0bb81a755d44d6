"""Crash-recover-continue histories: several power cuts in one device's life, work between.

A single-crash workload (:mod:`support.crashsim.loads`) proves every crash state of one run
recovers. A device lives longer than that: it is cut, recovers, keeps working, compacts
again, and is cut again, and some bugs need that whole history (a compaction cut after its
snapshot landed leaves records that only a *later* compaction into the same region can
mistake for its own). So a history here is a tree of recordings:

* the root: a workload on a freshly formatted device, every crash state judged;
* from a few of those crash states (picked by what they cut: a compaction before its
  superblock switch, a torn commit, a recovery's own writes), a child: the crash image
  recovered on a new recording device (the open and its seal recorded), closed (a clean
  close checkpoints a long journal) and reopened, then more work that shrinks the live set
  (sometimes to nothing), compacts it explicitly, regrows it with values large enough that
  a snapshot spans several records (so ``sync()`` compacts by itself when the region fills),
  overwrites to grow the journal, and closes (checkpoint) and reopens again;
* every crash state of every child is judged like the root's, and children get children of
  their own, ``levels`` crashes deep: a crash in a grandchild's recording is the fourth
  power cut of that device's history.

Every crash state is judged by the same oracle (:func:`support.crashsim.check.check_state`):
the recovered map equals the model at a commit point the crash could have hit, fsck is
clean, the store stays writable, and no exception at all, EIO included, since nothing here
damages the media. Separately, at marked durable points the current superblock copy gets a
flipped bit (media damage): open must give the committed state or refuse with EIO.
"""

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from guest.statefs import MemoryBlockDevice, Store, StoreConfig
from guest.statefs.layout import SUPERBLOCK_SLOTS
from harness.crashsim import Begin, CrashState, Depth, End, Recording, crash_states

from support.crashsim.check import (
    STORE_FAILURES,
    Figures,
    check_recording,
    check_superblock_damage,
    digest,
    record_failure,
    stopping,
)
from support.crashsim.driver import Driver, WorkloadError, preformatted, state_of
from support.crashsim.loads import CHURN

#: The after-recovery proof (fsck, writes, reopen) runs on every PROOF_EVERY-th state; every
#: state is recovered and compared, and the children of a history exercise the write path
#: after a recovery (a seal, a crash during it) at length.
PROOF_EVERY = 4
#: Operations whose windows are a recovery's own writes: the seal of a torn tail (in the open
#: of a crash image) and the checkpoint of a long journal (in the close after it).
RECOVERY_KINDS = {"open after crash": "seal", "close": "checkpoint"}
KINDS = ("switch", "torn", "seal", "checkpoint", "other")


@dataclass(frozen=True)
class History:
    """A device and the sizes of the work a history does on it."""

    name: str
    about: str
    sector_size: int
    sectors: int
    values: tuple[int, int]  # value sizes (bytes) of the live set's keys
    config: StoreConfig = field(default_factory=StoreConfig)
    keys: int = 6  # key names the work draws from
    regrow: int = 4  # big puts after the shrink (each its own sync)
    churn: int = 4  # overwrites after the regrow: a long journal for close to checkpoint
    #: Driver notes, summed over the history, the run must reach.
    expects: tuple[tuple[str, int], ...] = ()

    def key(self, index: int) -> str:
        return f"/state/h/{index:02d}"


def shape(depth: Depth) -> tuple[int, int]:
    """(levels, branches): crashes deep, children per recording."""
    return 3, (2 if depth.level == 1 else 3)


# -- the work --------------------------------------------------------------------------------


def _grow(d: Driver, history: History) -> None:
    """The root's work: grow the live set, overwrite (sync compacts when the region fills),
    compact, shrink, close and reopen."""
    for index in range(history.keys):
        if d.put(history.key(index), d.value(*history.values)) == 0:
            d.sync()
    d.mark_durable()
    for _ in range(history.churn):
        if d.model and d.put(d.pick(), d.value(*history.values)) == 0:
            d.sync()
    d.compact()
    for key in d.rng.sample(sorted(d.model), len(d.model) // 2):
        d.delete(key)
    d.sync()
    d.mark_durable()
    d.close()
    d.reopen()


def _recover_and_continue(d: Driver, history: History) -> None:
    """A child's work after its recorded open: close + reopen, shrink (synced, or committed
    by the compaction), compact, regrow, overwrite, delete, close + reopen."""
    d.close()
    d.reopen()
    keep = d.rng.choice((0, 0, 1, 2))
    victims = d.rng.sample(sorted(d.model), max(0, len(d.model) - keep))
    for key in victims:
        d.delete(key)
    if victims and d.rng.random() < 0.5:
        d.sync()
    d.compact()  # of the shrunk set (committing the deletes, half the time): maybe empty
    for _ in range(history.regrow):
        if d.put(history.key(d.rng.randrange(history.keys)), d.value(*history.values)) == 0:
            d.sync()
    d.mark_durable()
    for _ in range(history.churn):
        if d.model and d.put(d.pick(), d.value(*history.values)) == 0:
            d.sync()
    if d.model:
        d.delete(d.pick())
        d.sync()
    d.mark_durable()
    d.close()
    d.reopen()


# -- picking where to crash ------------------------------------------------------------------


class _Picker:
    """Sees every state of a recording that passed, keeps one seeded sample per kind of cut.

    Kinds: ``switch`` (a compaction whose snapshot is durable, its superblock write not),
    ``torn`` (a commit group whose header landed, the rest perhaps not: its recovery seals),
    ``seal`` (inside a recovery's seal), ``checkpoint`` (inside the close checkpoint after a
    recovery, or any close's), ``other``.
    """

    def __init__(self, recording: Recording, rng: random.Random) -> None:
        self.rng = rng
        self.kinds: dict[int, str] = {}
        self.superblock_lbas: dict[int, frozenset[int]] = {}
        self.first_lba: dict[int, int] = {}
        self.pools: dict[str, list] = {}
        windows = recording.windows()
        begin_at, inflight, what = [], None, None
        position = 0
        for window in windows:
            while position < window.end:
                event = recording.events[position]
                if isinstance(event, Begin):
                    inflight, what = position, event.what
                elif isinstance(event, End):
                    inflight, what = None, None
                position += 1
            begin_at.append((inflight, what))
        previous_data = False
        begin_at.append((None, None))
        for window in windows:
            lbas = [recording.events[index].lba for index in window.writes]
            superblock = frozenset(lba for lba in lbas if lba < SUPERBLOCK_SLOTS)
            inflight, what = begin_at[window.index]
            same_op = window.index > 0 and begin_at[window.index - 1][0] == inflight
            last_of_op = begin_at[window.index + 1][0] != inflight
            if not lbas or inflight is None:
                kind = "other"
            elif what in RECOVERY_KINDS:
                kind = RECOVERY_KINDS[what]
            elif superblock and same_op and previous_data:
                kind = "switch"
            elif not superblock and what == "sync" and last_of_op:
                kind = "torn"  # an append: the sync returns after this window's flush
            else:
                kind = "other"
            self.kinds[window.index] = kind
            self.superblock_lbas[window.index] = superblock
            self.first_lba[window.index] = lbas[0] if lbas else -1
            previous_data = any(lba >= SUPERBLOCK_SLOTS for lba in lbas)

    def offer(self, state: CrashState) -> None:
        kind = self.kinds[state.window]
        if kind == "switch" and self.superblock_lbas[state.window] & state.overlay.keys():
            kind = "other"  # the superblock (or part of it) landed: not a cut before it
        elif kind == "torn" and self.first_lba[state.window] not in state.overlay:
            kind = "other"  # the header did not land: nothing for a recovery to seal
        pool = self.pools.setdefault(kind, [0, None])
        pool[0] += 1
        if self.rng.randrange(pool[0]) == 0:
            pool[1] = state

    def picks(self, branches: int, level: int) -> list[tuple[str, CrashState]]:
        orders = [
            ("switch", "torn", "checkpoint", "seal", "other"),
            ("torn", "seal", "checkpoint", "switch", "other") if level == 0 else
            ("seal", "checkpoint", "torn", "switch", "other") if level == 1 else
            ("checkpoint", "seal", "torn", "switch", "other"),
        ]  # fmt: skip
        while len(orders) < branches:
            orders.append(tuple(self.rng.sample(KINDS, len(KINDS))))
        chosen: list[tuple[str, CrashState]] = []
        for order in orders[:branches]:
            for kind in order:
                pool = self.pools.get(kind)
                if pool and pool[1] is not None and all(pool[1] is not s for _, s in chosen):
                    chosen.append((kind, pool[1]))
                    break
        return chosen


# -- the tree --------------------------------------------------------------------------------


class _Run:
    """One history: its figures, its driver notes, its depth and stop rule."""

    def __init__(self, history: History, seed: int, depth: Depth, stop_after: int | None):
        self.history = history
        self.stop_on_damage = False
        self.depth = depth
        self.stop_after = stop_after
        self.levels, self.branches = shape(depth)
        self.rng = random.Random(f"{history.name}/{seed}/history")
        self.seed = seed
        self.figures = Figures(f"{history.name}[seed {seed}]")
        self.notes: dict[str, int] = {f"crashes_in_{kind}": 0 for kind in KINDS}
        self.notes["deepest"] = 0

    def stopped(self) -> bool:
        return stopping(self.figures, self.stop_after, damage=self.stop_on_damage)

    def driver(self, name: str, image: bytes, model: dict[str, bytes]) -> Driver:
        history = self.history
        return Driver(
            name,
            self.rng.getrandbits(32),
            sector_size=history.sector_size,
            sectors=history.sectors,
            config=history.config,
            image=image,
            initial_state=model,
        )

    def work(self, d: Driver, label: str, script: Callable[[], None], level: int) -> None:
        """Run a script; a failure is a failure of the history, the recording up to it is
        still judged."""
        try:
            script()
            d.finish()
        except (WorkloadError, *STORE_FAILURES) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            record_failure(self.figures, f"{label}: running the work", problem, level, "work")
        for name, count in d.notes.items():
            self.notes[name] = self.notes.get(name, 0) + count

    def judge(self, d: Driver, level: int, *, judged: bool = True) -> _Picker:
        """Judge every crash state of the driver's recording (``judged=False``: only
        generate them, to pick from: another job judges this recording)."""
        recording = d.segments[-1]
        picker = _Picker(recording, random.Random(self.rng.getrandbits(32)))
        seed = self.rng.getrandbits(32)
        if not judged:
            for state in crash_states(recording, self.depth, seed):
                picker.offer(state)
            return picker
        damage_rng = random.Random(self.rng.getrandbits(32))
        for number, (image, committed) in enumerate(d.durable_points):
            check_superblock_damage(
                image,
                self.history.sector_size,
                committed,
                self.figures,
                damage_rng,
                f"{recording.name} durable point {number}",
                level,
            )
        if not self.stopped():
            check_recording(
                recording,
                self.history.config,
                self.depth,
                self.figures,
                seed=seed,
                stop_after=self.stop_after,
                level=level,
                on_state=picker.offer,
                proof_every=PROOF_EVERY,
            )
        return picker

    def node(self, d: Driver, level: int, *, only: int | None = None) -> None:
        """Judge ``d``'s recording and descend into its picked crash states (``only``: into
        that branch alone, and leave judging this recording to the job of branch 0)."""
        picker = self.judge(d, level, judged=only in (None, 0))
        self.notes["deepest"] = max(self.notes["deepest"], level)
        if level >= self.levels or self.stopped():
            return
        for branch, (kind, state) in enumerate(picker.picks(self.branches, level)):
            if self.stopped():
                return
            if only is None or branch == only:
                self.child(d.segments[-1], state, kind, level, branch)

    def child(self, parent: Recording, state: CrashState, kind: str, level: int, branch: int):
        ss = self.history.sector_size
        image = state.image(ss)
        name = f"{parent.name} > crash {level + 1}.{branch} ({kind}: {state.label})"
        try:
            probe = Store.open(MemoryBlockDevice.from_image(image, ss), StoreConfig(read_only=True))
            recovered = state_of(probe)
        except STORE_FAILURES as exc:
            problem = f"recovery probe raised {type(exc).__name__}: {exc}"
            record_failure(self.figures, name, problem, level)
            return
        if all(parent.states[index] != recovered for index in state.allowed):
            record_failure(
                self.figures, name, f"recovered {digest(recovered)}, not a commit point", level
            )
            return
        self.notes[f"crashes_in_{kind}"] += 1
        d = self.driver(name, image, recovered)

        def script() -> None:
            d.open_after_crash()
            _recover_and_continue(d, self.history)

        self.work(d, name, script, level + 1)
        self.node(d, level + 1)


def run_history(
    history: History,
    seed: int,
    depth: Depth,
    *,
    branch: int | None = None,
    stop_after: int | None = None,
    stop_on_damage: bool = False,
) -> Figures:
    """Run one history tree (``branch``: only the subtree under the root's pick number
    ``branch``, so a tree splits into jobs; branch 0 judges the root). ``stop_after``
    failures of crash states or of the work stop the run early (of damage checks too with
    ``stop_on_damage``). Notes include the drivers', summed."""
    started, cpu = time.perf_counter(), time.process_time()
    run = _Run(history, seed, depth, stop_after)
    run.stop_on_damage = stop_on_damage
    seeds = random.Random(f"{history.name}/{seed}/format")
    image = preformatted(
        history.sector_size,
        history.sectors,
        volume_id=seeds.getrandbits(64),
        epoch=seeds.getrandbits(32),
        config=history.config,
    )
    root = run.driver(history.name, image, {})
    run.work(root, history.name, lambda: (root.reopen(), _grow(root, history)), 0)
    run.node(root, 0, only=branch)
    run.figures.workload += "" if branch is None else f"[branch {branch}]"
    run.figures.notes = run.notes
    run.figures.seconds = time.perf_counter() - started
    run.figures.cpu_seconds = time.process_time() - cpu
    return run.figures


HISTORIES: tuple[History, ...] = (
    History(
        "history-512",
        "512 B x 1,100 sectors, 55-62 KB values: snapshots of several records, region-full "
        "compaction inside sync",
        512,
        1100,
        (55_000, 62_000),
        expects=(
            ("sync_compactions", 1),
            ("explicit_compactions", 1),
            ("seals", 1),
            ("durable_after_compacting_commit", 1),
        ),
    ),
    History(
        "history-512-close",
        "512 B x 1,600 sectors, 40-60 KB values: long journals that close checkpoints",
        512,
        1600,
        (40_000, 60_000),
        churn=6,
        expects=(
            ("close_checkpoints", 1),
            ("explicit_compactions", 1),
            ("crashes_in_checkpoint", 1),
        ),
    ),
    History(
        "history-4096",
        "4096 B x 200 sectors, 20-60 KB values, compaction by garbage ratio",
        4096,
        200,
        (20_000, 60_000),
        config=CHURN,
        expects=(
            ("sync_compactions", 1),
            ("explicit_compactions", 1),
            ("durable_after_compacting_commit", 1),
        ),
    ),
)

BY_NAME = {history.name: history for history in HISTORIES}
