"""A recording block device: the log of a workload's writes and flushes, with its commit points.

Why a log: every crash state of a workload is a function of what the store asked the device to
do, in order (which sectors, in which write call, where the flushes fell), so the crash-state
generator (:mod:`support.crashstates`) works from this log, not from the store. Why commit
points in the same log: the oracle must know, for every point where the power could have been
cut, which store states a recovery may return. A workload driver puts a :class:`Begin` mark
(the state the operation is committing) before each store operation and an :class:`End` mark
(the state committed once it returned) after it; between them both are acceptable, outside
exactly the committed one.

Positions: a crash point ``p`` in ``0..len(events)`` means events ``[0, p)`` were issued. A
write is durable once a later flush completed; until then it may be lost or torn.
"""

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field

from support.crashdev import CrashDevice

#: The model state of a device that holds no store yet (recovery must raise ENODATA).
UNFORMATTED = None

Model = Mapping[str, bytes] | None


@dataclass(frozen=True)
class Write:
    """One sector of a device write call (a call of ``n`` sectors logs ``n`` of these)."""

    lba: int
    data: bytes
    call: int  # index of the write() call, so a multi-sector write can be torn as a unit


@dataclass(frozen=True)
class Flush:
    """A flush that completed: every write before it is durable."""


@dataclass(frozen=True)
class Begin:
    """A store operation starts; ``target`` is the state it commits if it completes."""

    target: int
    what: str


@dataclass(frozen=True)
class End:
    """A store operation returned (or failed); ``committed`` is the state now durable."""

    committed: int


Event = Write | Flush | Begin | End
FLUSH = Flush()


@dataclass(frozen=True)
class Window:
    """The sector writes between two completed flushes: the writes a crash can lose or tear.

    ``start`` is the crash point just after the opening flush (or the recording's start);
    ``end`` the last crash point before the closing flush completes (``len(events)`` when the
    recording stops with writes still volatile, as after a power cut).
    """

    index: int
    start: int
    end: int
    writes: tuple[int, ...]  # event indexes of the Write events, in issue order


@dataclass
class Recording:
    """One device's history from an initial image: events plus the model states they name."""

    sector_size: int
    sector_count: int
    initial: bytes
    states: list[Model] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    name: str = ""
    _timeline_cache: tuple = field(default=(), init=False, repr=False, compare=False)

    def add_state(self, model: Model) -> int:
        """Intern a copy of ``model``; returns its id (consecutive equal states share one)."""
        frozen = None if model is None else dict(model)
        if self.states and self.states[-1] == frozen:
            return len(self.states) - 1
        self.states.append(frozen)
        return len(self.states) - 1

    # -- what is acceptable where ------------------------------------------------------------

    def _timeline(self) -> tuple[list[int], list[frozenset[int]]]:
        """Crash points where the acceptable set changes, and the set from each one on."""
        cached = self._timeline_cache
        if cached and cached[0] == len(self.events):
            return cached[1], cached[2]
        committed, inflight = 0, None
        points, sets = [0], [frozenset((committed,))]
        for index, event in enumerate(self.events):
            if isinstance(event, Begin):
                inflight = event.target
            elif isinstance(event, End):
                committed, inflight = event.committed, None
            else:
                continue
            acceptable = {committed} if inflight is None else {committed, inflight}
            points.append(index + 1)
            sets.append(frozenset(acceptable))
        self._timeline_cache = (len(self.events), points, sets)
        return points, sets

    def allowed(self, lo: int, hi: int) -> frozenset[int]:
        """State ids a recovery may return for an image consistent with any crash point in
        ``[lo, hi]``. Recovery is deterministic and cannot know which point it was, so this
        is the intersection over the range: stricter than any single point, never looser."""
        points, sets = self._timeline()
        first = bisect_right(points, lo) - 1
        last = bisect_right(points, hi) - 1
        result = sets[first]
        for index in range(first + 1, last + 1):
            result = result & sets[index]
        return result

    def windows(self) -> list[Window]:
        """The flush windows, in order (empty ones included: they still have crash points)."""
        out: list[Window] = []
        start = 0
        writes: list[int] = []
        for index, event in enumerate(self.events):
            if isinstance(event, Write):
                writes.append(index)
            elif isinstance(event, Flush):
                out.append(Window(len(out), start, index, tuple(writes)))
                start, writes = index + 1, []
        out.append(Window(len(out), start, len(self.events), tuple(writes)))
        return out

    @property
    def write_count(self) -> int:
        return sum(isinstance(event, Write) for event in self.events)

    @property
    def flush_count(self) -> int:
        return sum(isinstance(event, Flush) for event in self.events)


class RecordingDevice(CrashDevice):
    """A :class:`CrashDevice` that also logs every write (per sector) and completed flush.

    Built on CrashDevice so a workload can still cut the power mid-operation
    (``schedule_power_cut``) and build the image it left (``image_with``); a write or flush
    the cut prevented is not logged.
    """

    def __init__(
        self,
        sector_size: int = 512,
        sector_count: int = 2048,
        *,
        image: bytes = b"",
        initial_state: Model = UNFORMATTED,
        name: str = "",
    ):
        super().__init__(sector_size, sector_count, image=image)
        self.recording = Recording(sector_size, sector_count, bytes(self.durable), name=name)
        self.recording.add_state(initial_state)
        self._calls = 0

    def _write(self, lba: int, data) -> None:
        super()._write(lba, data)
        count = len(data) // self.sector_size
        for sector in self.volatile[-count:]:
            self.recording.events.append(Write(sector.lba, sector.data, self._calls))
        self._calls += 1

    def _flush(self) -> None:
        super()._flush()
        self.recording.events.append(FLUSH)

    def begin(self, target: Model, what: str) -> None:
        """Mark the start of a store operation that commits ``target`` if it completes."""
        self.recording.events.append(Begin(self.recording.add_state(target), what))

    def end(self, committed: Model) -> None:
        """Mark the end of the operation: ``committed`` is the state now durable."""
        self.recording.events.append(End(self.recording.add_state(committed)))
