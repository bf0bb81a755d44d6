"""A recorded history with commit points: what the oracle needs besides the write log.

The oracle must know, for every point where the power could have been cut, which store states
a recovery may return. A workload driver puts a :class:`Begin` mark (the state the operation
is committing) before each store operation and an :class:`End` mark (the state committed once
it returned) after it; between them both are acceptable, outside exactly the committed one.
"""

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.crashsim.log import Flush, Write, WriteLog

#: The model state of a device that holds no store yet (recovery must raise ENODATA).
UNFORMATTED = None

Model = Mapping[str, bytes] | None


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


@dataclass
class Recording(WriteLog):
    """A write log plus commit marks and the model states they name (ids into ``states``)."""

    states: list[Model] = field(default_factory=list)
    _timeline_cache: tuple = field(default=(), init=False, repr=False, compare=False)

    def add_state(self, model: Model) -> int:
        """Intern a copy of ``model``; returns its id (consecutive equal states share one)."""
        frozen = None if model is None else dict(model)
        if self.states and self.states[-1] == frozen:
            return len(self.states) - 1
        self.states.append(frozen)
        return len(self.states) - 1

    def begin(self, target: int, what: str) -> None:
        self.events.append(Begin(target, what))

    def end(self, committed: int) -> None:
        self.events.append(End(committed))

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
