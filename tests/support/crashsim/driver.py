"""The workload driver: runs store operations on a recording device and keeps the model.

Why a driver and not plain store calls: every operation that may write must be bracketed by
the commit-point marks the oracle needs (:mod:`harness.crashsim.recording`), and the model
(a dict of what the store must hold) must follow exactly the store's documented semantics:
``put`` and ``delete`` change the in-memory view at once, ``sync``/``compact`` commit it, a
refused put (``ENOSPC``, ``ENOBUFS``) changes nothing. The driver also checks the store agrees
with the model after every commit, so a workload that drifts from the store fails loudly at its
step instead of producing thousands of confusing crash-state failures.

A workload can also crash itself (power cut inside a ``sync`` or ``compact``, then a chosen
subset of the unflushed writes persisted) and carry on from the recovered store: recovery
then writes (the seal of a torn tail), and that recovered device starts a new recording
(segment) whose crash states are enumerated like any other.
"""

import errno
import random
from collections.abc import Callable, Iterable

from guest.statefs import MemoryBlockDevice, StatefsError, Store, StoreConfig
from harness.crashsim import UNFORMATTED, Model, PowerCut, Recording, RecordingDevice


class WorkloadError(AssertionError):
    """The workload itself went wrong (store and model disagree, or a crash step recovered
    to a state that is no commit point): reported as a failure of the workload."""


#: A torn sector in a workload's own crash: (volatile write index, byte offset, new_head), as
#: in ``CrashDevice.image_with``: new bytes before the offset (new_head) or from it on.
Torn = tuple[int, int, bool]
#: Chooses which of ``n`` volatile sector writes a workload's own crash keeps, and optionally
#: one of them torn.
Keep = Callable[[int, random.Random], tuple[tuple[int, ...], Torn | None]]


def keep_first(count: int, _rng: random.Random) -> tuple[tuple[int, ...], None]:
    """Only the first sector (a record's header without its payload)."""
    return ((0,) if count else ()), None


def keep_all_magic_torn(count: int, _rng: random.Random) -> tuple[tuple[int, ...], Torn]:
    """Every sector, the first one (the record header) torn inside its magic: its first byte
    still old, everything after it new."""
    return tuple(range(count)), (0, 1, False)


def keep_random(count: int, rng: random.Random) -> tuple[tuple[int, ...], Torn | None]:
    """A seeded subset, sometimes with one kept write torn mid-sector (either way round)."""
    kept = tuple(index for index in range(count) if rng.random() < 0.5)
    torn = None
    if kept and rng.random() < 0.5:
        torn = (rng.choice(kept), rng.choice((8, 32, 100, 256, 500)), rng.random() < 0.5)
    return kept, torn


def state_of(store: Store) -> dict[str, bytes]:
    """The store's whole visible state, through the public API."""
    return {key: store.get(key) for key in store.list()}


class Driver:
    """One workload's device, store and model; ``segments`` are its recordings."""

    def __init__(
        self,
        name: str,
        seed: int,
        *,
        sector_size: int = 512,
        sectors: int = 1100,
        config: StoreConfig | None = None,
        image: bytes = b"",
        initial_state: Model = UNFORMATTED,
    ):
        self.name = name
        self.rng = random.Random(f"{name}/{seed}")
        self.sector_size = sector_size
        self.sectors = sectors
        self.config = config or StoreConfig()
        self.dev = RecordingDevice(
            sector_size, sectors, image=image, initial_state=initial_state, name=name
        )
        self.segments: list[Recording] = [self.dev.recording]
        self.store: Store | None = None
        self.committed: Model = initial_state
        self.model: dict[str, bytes] = dict(initial_state or {})
        self.notes: dict[str, int] = {
            "ENOSPC": 0,
            "ENOBUFS": 0,
            "crash_steps": 0,
            "compactions": 0,
            "seals": 0,
            "sync_compactions": 0,
            "explicit_compactions": 0,
            "close_checkpoints": 0,
            "durable_after_compacting_commit": 0,
        }
        #: (durable image, committed model) at points a script marked: inputs of the
        #: superblock-damage check.
        self.durable_points: list[tuple[bytes, dict[str, bytes]]] = []
        #: The last change of the committed state was made by a compaction's own snapshot
        #: (a sync that compacted, compact() with pending changes) and nothing was appended
        #: since: the case superblock damage once lost a commit in (see :meth:`mark_durable`);
        #: unknown, so assumed, for a device that starts from a crash image.
        self.compaction_committed = bool(initial_state)

    # -- bracketing --------------------------------------------------------------------------

    def _commit(self, what: str, action: Callable[[], object]) -> None:
        target = dict(self.model)
        self.dev.begin(target, what)
        action()
        self.dev.end(target)
        self.committed = target
        self._check_store()

    def _check_store(self) -> None:
        if self.store is not None and state_of(self.store) != self.model:
            raise WorkloadError(f"{self.name}: store and model disagree after a commit")

    def _count(self, store: Store) -> None:
        self.notes["compactions"] += store.counters["compactions"]
        self.notes["seals"] += store.counters["seals"]

    def _retire(self) -> None:
        if self.store is not None:
            self._count(self.store)
            self.store = None

    # -- store operations --------------------------------------------------------------------

    def format(self, *, volume_id: int | None = None, epoch: int | None = None) -> None:
        """Format the device (recorded): the old state or the empty store, nothing else."""
        self._retire()
        volume_id = self.rng.getrandbits(64) if volume_id is None else volume_id
        epoch = self.rng.getrandbits(32) if epoch is None else epoch
        self.model = {}
        self.dev.begin({}, "format")
        self.store = Store.format(self.dev, self.config, volume_id=volume_id, epoch=epoch)
        self.dev.end({})
        self.committed = {}

    def put(self, key: str, value: bytes) -> int:
        """Put; returns 0, or the errno of a refusal (ENOSPC, ENOBUFS), which changes nothing."""
        try:
            self.store.put(key, value)
        except StatefsError as exc:
            if exc.errno not in (errno.ENOSPC, errno.ENOBUFS):
                raise
            self.notes[errno.errorcode[exc.errno]] += 1
            return exc.errno
        self.model[key] = value
        return 0

    def delete(self, key: str) -> None:
        self.store.delete(key)
        del self.model[key]

    def batch(self, operations: Iterable[tuple[str, bytes | None]]) -> int:
        """``write_batch``, all or nothing; returns 0 or the errno of a refusal."""
        operations = list(operations)
        try:
            self.store.write_batch(operations)
        except StatefsError as exc:
            if exc.errno not in (errno.ENOSPC, errno.ENOBUFS):
                raise
            self.notes[errno.errorcode[exc.errno]] += 1
            return exc.errno
        for key, value in operations:
            if value is None:
                del self.model[key]
            else:
                self.model[key] = value
        return 0

    def sync(self) -> None:
        before, changes = self.store.counters["compactions"], self.committed != self.model
        self._commit("sync", self.store.sync)
        compacted = self.store.counters["compactions"] - before
        self.notes["sync_compactions"] += compacted
        if changes:
            self.compaction_committed = bool(compacted)

    def compact(self) -> None:
        changes = self.committed != self.model
        self._commit("compact", self.store.compact)
        self.notes["explicit_compactions"] += 1
        self.compaction_committed = changes

    def close(self) -> None:
        """``Store.close()`` (recorded: it syncs, and checkpoints a long journal), then the
        device stays attached for the next :meth:`reopen`, as a disk outlives its store."""
        target = dict(self.model)
        before, changes = self.store.counters["compactions"], self.committed != self.model
        self.dev.begin(target, "close")
        self.store.close()
        self.dev.end(target)
        self.committed = target
        compacted = self.store.counters["compactions"] - before
        self.notes["close_checkpoints"] += compacted
        if compacted:
            self.compaction_committed = changes  # pending changes: perhaps by the compaction
        self._retire()
        self.dev.closed = False

    def mark_durable(self) -> None:
        """Remember the durable image and the committed model here (after a completed
        commit, nothing is volatile): a point to inject superblock damage at later.

        Points where the last change was committed by a compaction's snapshot with nothing
        appended after it are counted (``durable_after_compacting_commit``): the histories
        must keep reaching them, since superblock damage there once dropped a commit."""
        if self.dev.volatile:
            raise WorkloadError(f"{self.name}: mark_durable with unflushed writes")
        if self.compaction_committed:
            self.notes["durable_after_compacting_commit"] += 1
        self.durable_points.append((bytes(self.dev.durable), dict(self.committed)))

    def reopen(self) -> None:
        """Drop the store (a crash between calls: pending changes are lost) and open again."""
        self._retire()
        self.model = dict(self.committed)
        self.dev.begin(self.committed, "reopen")
        self.store = Store.open(self.dev, self.config)
        self.dev.end(self.committed)
        self._check_store()

    def crash(self, action: str = "sync", *, cut_after: int = 1, keep: Keep = keep_random) -> None:
        """Cut the power inside ``sync``/``compact`` before device operation ``cut_after``,
        persist what ``keep`` chooses of the unflushed writes, and continue on the recovered
        store (a new segment). The recovery must be one of the two commit points."""
        self.notes["crash_steps"] += 1
        before, target = self.committed, dict(self.model)
        self.dev.begin(target, f"{action} (power cut)")
        self.dev.schedule_power_cut(cut_after)
        try:
            getattr(self.store, action)()
        except PowerCut:
            pass
        else:
            self.dev.end(target)
            before = target
        self.dev.cut_after = None
        kept, torn = keep(len(self.dev.volatile), self.rng)
        if torn is None:
            image = self.dev.image_with(kept)
        else:
            image = self.dev.image_with(kept, torn[:2], new_head=torn[2])
        self._retire()
        probe = Store.open(
            MemoryBlockDevice.from_image(image, self.sector_size), StoreConfig(read_only=True)
        )
        recovered = state_of(probe)
        if recovered not in (before, target):
            raise WorkloadError(
                f"{self.name}: crash step ({action}, cut before op {cut_after}, kept {kept}, "
                f"torn {torn}) recovered {len(recovered)} keys, not a commit point"
            )
        self.start_segment(image, recovered, f"{self.name} after crash {self.notes['crash_steps']}")

    def start_segment(self, image: bytes, recovered: dict[str, bytes], name: str) -> None:
        """Continue on a new recording from a crash image whose recovery gives ``recovered``:
        the open (and its seal of a torn tail) is the segment's first recorded operation."""
        self._retire()
        self.dev = RecordingDevice(
            self.sector_size, self.sectors, image=image, initial_state=recovered, name=name
        )
        self.segments.append(self.dev.recording)
        self.committed = recovered
        self.model = dict(recovered)
        self.open_after_crash()

    def open_after_crash(self) -> None:
        """The recorded open of a crash image (its seal of a torn tail included); the model is
        the state the image recovers to, the driver's ``committed`` state."""
        self._retire()
        self.dev.begin(self.committed, "open after crash")
        self.store = Store.open(self.dev, self.config)
        self.dev.end(self.committed)
        self._check_store()

    def finish(self) -> None:
        """End the workload: a last sync of anything pending, counters collected."""
        if self.store is not None and self.store.pending_ops:
            self.sync()
        self._retire()

    # -- helpers for scripts -----------------------------------------------------------------

    def value(self, low: int, high: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(low, high))

    def pick(self) -> str | None:
        """A random live key (None when the model is empty)."""
        return self.rng.choice(sorted(self.model)) if self.model else None


def preformatted(
    sector_size: int, sectors: int, *, volume_id: int, epoch: int, config: StoreConfig
) -> bytes:
    """The image of a freshly formatted store (so a workload's recording starts formatted;
    see the first-format test for why the format of a blank device is recorded apart)."""
    dev = MemoryBlockDevice(sector_size, sectors)
    Store.format(dev, config, volume_id=volume_id, epoch=epoch)
    return bytes(dev.data)
