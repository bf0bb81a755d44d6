"""A device write log: the sector writes and completed flushes a crash-state generator reads.

Why a log and not a device: every crash state of a history is a function of what was asked of
the device, in order (which sectors, in which write call, where the flushes fell). That log can
come from a recording device under a host workload (:mod:`harness.crashsim.devices`) or from a
real guest's block-layer log (QEMU's blklogwrites); :func:`harness.crashsim.states.crash_states`
takes either, as a :class:`WriteLog`.

Positions: a crash point ``p`` in ``0..len(events)`` means events ``[0, p)`` were issued. A
write is durable once a later flush completed; until then it may be lost or torn. Events other
than :class:`Write` and :class:`Flush` (commit marks, see :mod:`harness.crashsim.recording`)
take a position but touch no sector.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Write:
    """One sector of a device write call (a call of ``n`` sectors logs ``n`` of these)."""

    lba: int
    data: bytes
    call: int  # index of the write() call, so a multi-sector write can be torn as a unit


@dataclass(frozen=True)
class Flush:
    """A flush that completed: every write before it is durable."""


FLUSH = Flush()


@dataclass(frozen=True)
class Window:
    """The sector writes between two completed flushes: the writes a crash can lose or tear.

    ``start`` is the crash point just after the opening flush (or the log's start); ``end`` the
    last crash point before the closing flush completes (``len(events)`` when the log stops
    with writes still volatile, as after a power cut).
    """

    index: int
    start: int
    end: int
    writes: tuple[int, ...]  # event indexes of the Write events, in issue order


@dataclass
class WriteLog:
    """A device's history from an initial image: sector writes and completed flushes.

    Build one with :meth:`write` and :meth:`flush` in the order the device saw them (a
    replayer of a guest log calls them per log entry). ``allowed`` says which model states a
    recovery may return; a bare log knows none (:class:`~harness.crashsim.recording.Recording`
    adds commit marks that do).
    """

    sector_size: int
    sector_count: int
    initial: bytes
    events: list = field(default_factory=list)
    name: str = ""
    _calls: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.initial) != self.sector_size * self.sector_count:
            raise ValueError(
                f"initial image of {len(self.initial)} bytes is not "
                f"{self.sector_count} sectors of {self.sector_size}"
            )

    def write(self, lba: int, data: bytes) -> None:
        """Log one write call of whole sectors at ``lba`` (one :class:`Write` per sector)."""
        ss = self.sector_size
        if len(data) % ss or lba < 0 or lba + len(data) // ss > self.sector_count:
            raise ValueError(f"write of {len(data)} bytes at LBA {lba} does not fit the device")
        data = bytes(data)
        for index in range(len(data) // ss):
            self.events.append(Write(lba + index, data[index * ss : (index + 1) * ss], self._calls))
        self._calls += 1

    def flush(self) -> None:
        """Log a completed flush."""
        self.events.append(FLUSH)

    def allowed(self, lo: int, hi: int) -> frozenset[int]:
        """Model states acceptable for a crash anywhere in ``[lo, hi]``: none known here."""
        return frozenset()

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
