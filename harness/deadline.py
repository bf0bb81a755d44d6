"""Deadlines as objects passed down, and human durations (``90s``, ``2m``).

A wait that takes a number of seconds restarts its budget at every level of the call stack;
a :class:`Deadline` is an absolute point in time, so a boot that has 90 s gets 90 s in total
however many console reads, QMP calls and process waits it makes on the way (labgrid's
``Timeout`` does the same).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable

from harness.errors import ConfigError, DeadlineExceeded

Clock = Callable[[], float]

_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|sec|m|min|h)?")
_UNIT_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


#: The environment variable every entry point (CLI, pytest plugin) reads the multiplier from.
MULTIPLIER_ENV = "QEMU_TIMEOUT_MULTIPLIER"
#: Largest timeout multiplier accepted: beyond it a typo (``30000``) would mean "never".
MAX_MULTIPLIER = 1000.0


def parse_multiplier(text: str | float | int) -> float:
    """A timeout multiplier in (0, :data:`MAX_MULTIPLIER`]; raises :class:`ConfigError` naming
    the value (the caller adds where it came from)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not 0 < value <= MAX_MULTIPLIER:
        raise ConfigError(
            f"timeout multiplier must be a number in (0, {MAX_MULTIPLIER:g}], got {text!r}"
        )
    return value


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``90``, ``90s``, ``2m``, ``1m30s``, ``1.5m`` or ``500ms``.

    Raises :class:`ConfigError` naming the text, so ``RUN_TIMEOUT=abc`` fails loudly instead of
    meaning "no timeout".
    """
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        stripped = text.strip().lower()
        pos = 0
        seconds = 0.0
        parts = 0
        while pos < len(stripped):
            match = _DURATION.match(stripped, pos)
            if match is None:
                raise ConfigError(f"invalid duration {text!r} (examples: 90, 90s, 2m, 1m30s)")
            seconds += float(match["value"]) * _UNIT_SECONDS[match["unit"]]
            pos = match.end()
            parts += 1
        if parts == 0:
            raise ConfigError(f"invalid duration {text!r} (examples: 90, 90s, 2m, 1m30s)")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"invalid duration {text!r}: must be a positive number of seconds")
    return seconds


class Deadline:
    """An absolute point on a monotonic clock, with a label for error messages.

    ``Deadline(None)`` never expires. :meth:`child` makes a shorter deadline that never outlives
    its parent, which is how a per-boot timeout nests inside ``RUN_TIMEOUT``.
    """

    def __init__(self, seconds: float | None, *, label: str = "", clock: Clock = time.monotonic):
        self._clock = clock
        self.label = label
        self.started = clock()
        self.seconds = math.inf if seconds is None else float(seconds)
        self.at = self.started + self.seconds

    def __repr__(self) -> str:
        return f"Deadline({self.label!r}, remaining={self.remaining():.3f})"

    @classmethod
    def never(cls, label: str = "never") -> Deadline:
        return cls(None, label=label)

    def remaining(self) -> float:
        """Seconds left (never negative; ``inf`` for a deadline that never expires)."""
        return max(0.0, self.at - self._clock())

    def elapsed(self) -> float:
        return self._clock() - self.started

    @property
    def expired(self) -> bool:
        return self._clock() >= self.at

    def timeout(self, cap: float | None = None) -> float | None:
        """The remaining time in the form blocking APIs want: ``None`` means "block forever",
        ``cap`` bounds a single wait so a loop can check other conditions."""
        remaining = self.remaining()
        if cap is not None:
            remaining = min(remaining, cap)
        return None if math.isinf(remaining) else remaining

    def child(self, seconds: float | None, *, label: str = "") -> Deadline:
        """A deadline ``seconds`` from now, or this one if that is sooner."""
        child = Deadline(seconds, label=label or self.label, clock=self._clock)
        if child.at > self.at:
            child.at = self.at
            child.label = self.label
            child.seconds = self.seconds  # report the deadline that actually applies
        return child

    def check(self, what: str, *, evidence: str = "") -> None:
        """Raise :class:`DeadlineExceeded` naming ``what`` if the deadline has passed."""
        if self.expired:
            raise DeadlineExceeded(what, label=self.label, seconds=self.seconds, evidence=evidence)
