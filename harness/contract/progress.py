"""Live progress for a terminal or a CI log: each marker as it arrives, with its time.

Markers are the product's output, so this is plain printing to a stream, not logging. The
printer is called from the thread that feeds the matcher (the runner's), never concurrently.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from harness.contract.matcher import MatchEvent

_SYMBOLS = {"marker": "+", "optional": ".", "failure": "!", "complete": "="}


class ProgressPrinter:
    """Prints ``boot N [  t s] + <line>`` per event; colours only on a terminal."""

    def __init__(self, stream: TextIO | None = None, *, prefix: str = "") -> None:
        self.stream = stream or sys.stdout
        self.prefix = prefix
        self.colour = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.monotonic()

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def say(self, text: str) -> None:
        self.stream.write(f"{self.prefix}{text}\n")
        self.stream.flush()

    def __call__(self, event: MatchEvent) -> None:
        at = "   ?   " if event.at is None else f"{event.at:7.2f}"
        symbol = _SYMBOLS.get(event.kind, "?")
        if event.kind == "complete":
            text = self._paint("every required marker arrived", "1;32")
        elif event.kind == "failure":
            text = self._paint(f"FAILURE [{event.marker_id or 'harness'}] {event.line}", "1;31")
        elif event.kind == "marker":
            text = self._paint(event.line.strip(), "32") + f"  [{event.marker_id}]"
        else:
            text = event.line.strip()
        self.say(f"boot {event.boot} [{at} s] {symbol} {text}")
