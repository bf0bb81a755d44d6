"""Counts of every bad input and fault the robustness tests tried, for docs/testing/robustness.md.

The table in that document must come from a test run, not from someone's memory, so each
robustness test counts what it did in an :class:`Outcomes` and calls :meth:`Outcomes.commit`
when it has passed. When ``STATEFS_TALLY`` names a file, ``commit`` appends one JSON line to it
(one ``write`` of an ``O_APPEND`` descriptor, so pytest-xdist workers can share the file);
``python -m tests.robustness.report`` sets the variable, runs the tests and renders the table.
Without the variable nothing is written and counting costs next to nothing.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

TALLY_ENV = "STATEFS_TALLY"

T = TypeVar("T")


def outcome_name(exc: BaseException) -> str:
    """A stable outcome label for an exception: its errno name for OSErrors, else its type."""
    import errno

    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in errno.errorcode:
        return f"{type(exc).__name__} {errno.errorcode[code]}"
    return type(exc).__name__


class Outcomes:
    """What one target did with one kind of input: how many tries, which outcomes, extremes.

    ``area`` groups rows in the table (Fuzz, Load, Faults, Security); ``target`` is the code
    under test, ``input`` the kind of bad input or fault. ``failures`` counts crashes, hangs and
    losses; a passing test always commits zero, so the table shows that the zero was measured.
    """

    def __init__(self, area: str, target: str, input_kind: str) -> None:
        self.area = area
        self.target = target
        self.input_kind = input_kind
        self.tried = 0
        self.outcomes: Counter[str] = Counter()
        self.failures = 0
        self.max_seconds = 0.0
        self.max_peak_bytes = 0
        self.notes: list[str] = []
        self.started = time.monotonic()

    def count(self, outcome: str, n: int = 1) -> None:
        """Record ``n`` tries that ended in ``outcome``."""
        self.tried += n
        self.outcomes[outcome] += n

    def observe(self, seconds: float = 0.0, peak_bytes: int = 0) -> None:
        """Keep the slowest try and the largest memory peak seen."""
        self.max_seconds = max(self.max_seconds, seconds)
        self.max_peak_bytes = max(self.max_peak_bytes, peak_bytes)

    def run(self, call: Callable[[], T], expected: tuple[type[BaseException], ...]) -> T | None:
        """Call ``call``; count its outcome ("ok" or the expected exception's name).

        Any exception outside ``expected`` propagates: that is the failure being hunted.
        """
        started = time.perf_counter()
        try:
            result = call()
        except expected as exc:
            self.observe(time.perf_counter() - started)
            self.count(outcome_name(exc))
            return None
        self.observe(time.perf_counter() - started)
        self.count("ok")
        return result

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_dict(self) -> dict[str, object]:
        return {
            "area": self.area,
            "target": self.target,
            "input": self.input_kind,
            "tried": self.tried,
            "outcomes": dict(self.outcomes),
            "failures": self.failures,
            "max_ms": round(self.max_seconds * 1000, 2),
            "max_peak_kib": round(self.max_peak_bytes / 1024, 1),
            "notes": self.notes,
            "test_seconds": round(time.monotonic() - self.started, 2),
        }

    def commit(self) -> None:
        """Append this row to the tally file, if a report run asked for one."""
        path = os.environ.get(TALLY_ENV)
        if not path:
            return
        line = (json.dumps(self.as_dict(), sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
