"""The oracle: recover every crash state of a workload and judge what came back.

For each crash state, ``Store.open`` on a device holding those bytes must either

* succeed and yield exactly one of the model states the recording allows for that state's
  crash points (the state committed by the last completed operation, or the one an operation
  in flight was committing), then pass ``fsck``, then accept a delete, a put and a sync and
  give exactly that back on a crash-free reopen (the seal path: a recovered store must be
  writable and consistent, not merely readable); or
* raise ``ENODATA`` where the model says the device holds no store yet.

Anything else is a failure, including any exception: a plain crash never makes bytes that are
impossible under the model, so a correct store has no reason to refuse one. The converse (a
clear error when the bytes *are* impossible) is :func:`check_damage`: a committed record
damaged in the middle of the journal must raise ``EIO``, never replay to some state.

Failures name the workload and the crash state; models are shown as key counts and digests,
never as values.
"""

import errno
import hashlib
import random
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from guest.statefs import (
    CorruptionError,
    MemoryBlockDevice,
    StatefsError,
    Store,
    StoreConfig,
    UnformattedError,
    check_device,
)
from guest.statefs.layout import (
    CRC_COVERS_FROM,
    RECORD_HEADER,
    RECORD_HEADER_BYTES,
    RECORD_MAGIC,
    SUPERBLOCK_BYTES,
    round_up,
)
from guest.statefs.superblock import choose as choose_superblock
from guest.statefs.superblock import read_slots
from harness.crashsim import (
    UNFORMATTED,
    CrashState,
    Depth,
    Flush,
    Model,
    OverlayDevice,
    Recording,
    Write,
    crash_states,
)

from support.crashsim.driver import Driver, WorkloadError, state_of
from support.crashsim.loads import Workload

#: What a buggy store might raise out of ``open``/``sync`` (beyond StatefsError, an OSError).
#: PowerCut and KeyboardInterrupt are deliberately not here.
STORE_FAILURES = (OSError, ArithmeticError, LookupError, TypeError, ValueError, struct.error)

PROBE_KEY = "/state/~crash/probe"
PROBE_VALUE = b"written after recovery"


def digest(model: Model) -> str:
    """Short, stable name of a model state: key count and a hash of the sorted items."""
    if model is None:
        return "unformatted"
    hasher = hashlib.blake2b(digest_size=4)
    for key in sorted(model):
        hasher.update(key.encode() + b"\0" + len(model[key]).to_bytes(4, "little"))
        hasher.update(model[key])
    return f"{len(model)} keys #{hasher.hexdigest()}"


def diff(got: dict[str, bytes], want: dict[str, bytes]) -> str:
    """Key names only (first few of each kind), with value sizes for changed ones."""
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    changed = sorted(key for key in set(got) & set(want) if got[key] != want[key])
    parts = [f"missing {missing[:3]}" if missing else "", f"extra {extra[:3]}" if extra else ""]
    if changed:
        sizes = [f"{key} {len(want[key])}B->{len(got[key])}B" for key in changed[:3]]
        parts.append(f"changed {sizes}")
    return "; ".join(part for part in parts if part) or "equal"


@dataclass
class Failure:
    workload: str
    label: str
    problem: str
    #: Recoveries before the recording this failure is in: 0 = a single crash of a device
    #: that never crashed before, 1 = after a first recovery, ...
    level: int = 0
    #: "state" (a crash state), "work" (the workload itself), "damage" (injected media damage)
    kind: str = "state"

    def __str__(self) -> str:
        return f"{self.workload}: {self.label}: {self.problem}"


@dataclass
class Figures:
    """What one workload run checked; also what the session summary adds up."""

    workload: str
    segments: int = 0
    windows: int = 0
    writes: int = 0
    flushes: int = 0
    generated: int = 0  # crash states built, before merging identical bytes
    checked: int = 0  # distinct crash states recovered and judged
    after_recovery: int = 0  # ... of them in a segment that starts from a recovered crash
    newer: int = 0  # recovered to the state an operation in flight was committing
    older: int = 0  # recovered to the last committed state (the in-flight one was lost)
    proven: int = 0  # ... then fsck, delete + put + sync and a crash-free reopen all agreed
    unformatted: int = 0
    damage_checked: int = 0
    notes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["failures"] = len(self.failures)
        return data


def record_failure(
    figures: Figures, label: str, problem: str, level: int = 0, kind: str = "state"
) -> None:
    figures.failures.append(Failure(figures.workload, label, problem, level, kind))


def stopping(figures: Figures, stop_after: int | None, *, damage: bool = False) -> bool:
    """``stop_after`` failures of a crash state or of the work seen (of damage checks too if
    ``damage``; by default they do not stop a run, so a mutant's report can say which crash
    states catch it)."""
    if stop_after is None:
        return False
    counted = sum(damage or failure.kind != "damage" for failure in figures.failures)
    return counted >= stop_after


def check_state(
    recording: Recording, state: CrashState, config, *, prove: bool = True
) -> tuple[str | None, str]:
    """Recover one crash state; returns ``(problem or None, outcome)``.

    ``prove=False`` skips the after-recovery proof (fsck, writes, reopen): the histories run
    it on a sample (see :func:`check_recording`)."""
    ss = recording.sector_size
    dev = OverlayDevice(state.base, ss, state.overlay)
    allowed = sorted(state.allowed)
    models = [recording.states[index] for index in allowed]
    try:
        store = Store.open(dev, config)
    except UnformattedError as exc:
        if UNFORMATTED in models and allowed:
            return None, "unformatted"
        return f"open raised {exc} (allowed: {[digest(m) for m in models]})", ""
    except STORE_FAILURES as exc:
        return f"open raised {type(exc).__name__}: {exc}", ""
    try:
        recovered = state_of(store)
    except STORE_FAILURES as exc:
        return f"reading the recovered store raised {type(exc).__name__}: {exc}", ""
    if not allowed:
        return (
            f"recovered {digest(recovered)}, but no single commit point fits every crash "
            "point these bytes are consistent with: an operation returned while its writes "
            "were still unflushed",
            "",
        )
    matches = [index for index, model in zip(allowed, models, strict=True) if model == recovered]
    if not matches:
        nearest = min(
            (model for model in models if model is not None),
            key=lambda model: len(set(model.items()) ^ set(recovered.items())),
            default=None,
        )
        versus = "" if nearest is None else f"; vs {digest(nearest)}: {diff(recovered, nearest)}"
        return (
            f"recovered {digest(recovered)}, allowed {[digest(m) for m in models]}{versus}",
            "",
        )
    outcome = "newer" if matches[-1] == allowed[-1] and len(allowed) > 1 else "older"
    if not prove:
        return None, outcome
    return _after_recovery(store, dev, recovered, config), outcome + " proven"


def _after_recovery(store: Store, dev: OverlayDevice, recovered: dict[str, bytes], config):
    """fsck, then a delete + put + sync, then a crash-free reopen that must give exactly that."""
    try:
        report = store.fsck()
        if not report.ok:
            return f"fsck after recovery: {report.errors[0][:160]}"
        expected = dict(recovered)
        if expected:
            victim = min(expected)
            store.delete(victim)
            del expected[victim]
        try:
            store.put(PROBE_KEY, PROBE_VALUE)
            expected[PROBE_KEY] = PROBE_VALUE
        except StatefsError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        store.sync()
        again = state_of(Store.open(dev, config))
    except STORE_FAILURES as exc:
        return f"after recovery, writes + sync + reopen raised {type(exc).__name__}: {exc}"
    if again != expected:
        return f"after recovery, writes + sync + reopen gave {diff(again, expected)}"
    return None


def check_recording(
    recording: Recording,
    config,
    depth: Depth,
    figures: Figures,
    *,
    seed: int = 0,
    stop_after: int | None = None,
    level: int = 0,
    on_state: Callable[[CrashState], None] | None = None,
    proof_every: int = 1,
) -> None:
    """Check every crash state of one recording, adding to ``figures``.

    ``level``: recoveries before this recording (above 0, its states count as judged after
    a first recovery). ``on_state`` sees every state that passed (a history
    picks the crash points it continues from there). ``proof_every``: every
    ``proof_every``-th state gets the after-recovery proof (1: all of them)."""
    figures.segments += 1
    figures.windows += len(recording.windows())
    figures.writes += recording.write_count
    figures.flushes += recording.flush_count
    prefix = f"{recording.name} " if figures.segments > 1 else ""
    for state in crash_states(recording, depth, seed):
        figures.generated += state.merged
        figures.checked += 1
        figures.after_recovery += level > 0
        prove = figures.checked % proof_every == 0
        problem, outcome = check_state(recording, state, config, prove=prove)
        if problem is not None:
            label = state.label + (f" (+{state.merged - 1} same bytes)" if state.merged > 1 else "")
            record_failure(figures, prefix + label, problem, level)
            if stopping(figures, stop_after):
                return
            continue
        if outcome == "unformatted":
            figures.unformatted += 1
        elif outcome:
            which, _, proven = outcome.partition(" ")
            setattr(figures, which, getattr(figures, which) + 1)
            figures.proven += bool(proven)
        if on_state is not None:
            on_state(state)


def committed_records(image: bytes, sector_size: int) -> list[tuple[int, int]]:
    """``(byte offset, covered bytes)`` of each record replay accepts in the active region, in
    order: the headers are walked here, replay only says how many records it accepted."""
    store = Store.open(
        MemoryBlockDevice.from_image(image, sector_size), StoreConfig(read_only=True)
    )
    sb = store.superblock
    start = sb.region_start(sb.active_region) * sector_size
    replayed = store.replay
    records, offset = [], 0
    for _ in range(replayed.records):
        fields = RECORD_HEADER.unpack_from(image, start + offset)
        if fields[0] != RECORD_MAGIC:
            break
        covered = RECORD_HEADER_BYTES + fields[8]
        records.append((start + offset, covered))
        offset += round_up(covered, sector_size)
    return records


def durable_images(recording: Recording, count: int) -> list[bytes]:
    """The durable image after ``count`` flushes spread evenly over the recording (the last
    one included): points where the journal holds records to damage."""
    flushes = [index for index, event in enumerate(recording.events) if isinstance(event, Flush)]
    if not flushes or count <= 0:
        return []
    step = max(1, len(flushes) // count)
    wanted = set(flushes[::-step][:count])
    image = bytearray(recording.initial)
    ss = recording.sector_size
    images = []
    for index, event in enumerate(recording.events):
        if isinstance(event, Write):
            image[event.lba * ss : (event.lba + 1) * ss] = event.data
        elif index in wanted:
            images.append(bytes(image))
    return images


def check_damage(image: bytes, sector_size: int, figures: Figures, rng: random.Random) -> None:
    """Impossible bytes must be refused: flip one CRC-covered bit of a committed record that
    has a later committed record after it; open must raise EIO and fsck must say damaged."""
    records = committed_records(image, sector_size)[:-1]
    if not records:
        return
    offset, covered = rng.choice(records)
    position = offset + rng.randrange(covered)
    damaged = bytearray(image)
    damaged[position] ^= 1 << rng.randrange(8)
    label = f"damage: bit flipped at device byte {position} (record at {offset})"
    dev = MemoryBlockDevice.from_image(bytes(damaged), sector_size)
    figures.damage_checked += 1
    try:
        Store.open(dev, StoreConfig(read_only=True))
    except CorruptionError:
        if check_device(dev).ok:
            record_failure(figures, label, "open raised EIO but fsck says clean", kind="damage")
        return
    except STORE_FAILURES as exc:
        record_failure(
            figures, label, f"open raised {type(exc).__name__}: {exc}, not EIO", kind="damage"
        )
        return
    record_failure(figures, label, "damaged journal opened without an error", kind="damage")


def check_superblock_damage(
    image: bytes,
    sector_size: int,
    committed: dict[str, bytes],
    figures: Figures,
    rng: random.Random,
    label: str,
    level: int = 0,
) -> None:
    """Bit rot in the current superblock copy (not a torn write): open must return exactly the
    committed state or refuse with EIO, never fall back to the older copy and drop the commit
    groups appended since without a word."""
    slots = read_slots(MemoryBlockDevice.from_image(image, sector_size))
    current = choose_superblock(slots)
    position = current.slot * sector_size + rng.randrange(CRC_COVERS_FROM, SUPERBLOCK_BYTES)
    damaged = bytearray(image)
    damaged[position] ^= 1 << rng.randrange(8)
    label = f"{label}: bit flipped in current superblock slot {current.slot} (byte {position})"
    figures.damage_checked += 1
    try:
        store = Store.open(
            MemoryBlockDevice.from_image(bytes(damaged), sector_size), StoreConfig(read_only=True)
        )
        recovered = state_of(store)
    except CorruptionError:
        return
    except STORE_FAILURES as exc:
        record_failure(
            figures, label, f"open raised {type(exc).__name__}: {exc}, not EIO", level, "damage"
        )
        return
    if recovered != committed:
        record_failure(
            figures,
            label,
            f"recovered {digest(recovered)}, committed {digest(committed)}: "
            f"{diff(recovered, committed)} (committed groups dropped without an error)",
            level,
            "damage",
        )


def run_workload(
    workload: Workload,
    seed: int,
    depth: Depth,
    *,
    stop_after: int | None = None,
    damage: int = 4,
) -> Figures:
    """Run ``workload``, then recover and judge every crash state of every segment."""
    started, cpu = time.perf_counter(), time.process_time()
    figures = Figures(f"{workload.name}[seed {seed}]")
    try:
        driver: Driver = workload.run(seed, depth.scale)
    except (WorkloadError, *STORE_FAILURES) as exc:
        record_failure(figures, "running the workload", f"{type(exc).__name__}: {exc}")
        figures.seconds = time.perf_counter() - started
        return figures
    figures.notes = dict(driver.notes)
    for number, recording in enumerate(driver.segments):
        check_recording(
            recording,
            workload.config,
            depth,
            figures,
            seed=seed * 1000 + number,
            stop_after=stop_after,
            level=number,
        )
        if stopping(figures, stop_after):
            break
    else:
        rng = random.Random(seed)
        for recording in driver.segments:
            for image in durable_images(recording, damage):
                check_damage(image, workload.sector_size, figures, rng)
    figures.seconds = time.perf_counter() - started
    figures.cpu_seconds = time.process_time() - cpu
    return figures


def failure_report(figures: Figures, limit: int = 12) -> str:
    """The assertion message: counts, then the first failures, one per line."""
    lines = [
        f"{len(figures.failures)} of {figures.checked} crash states failed in {figures.workload}"
    ]
    lines += [f"  {failure}" for failure in figures.failures[:limit]]
    if len(figures.failures) > limit:
        lines.append(f"  ... and {len(figures.failures) - limit} more")
    return "\n".join(lines)
