"""The one rule for cutting console text into lines, and the one rule for their times.

Everything that reads a console (the live matcher, ``uart.timestamps``, the ``markers`` replay
of a past run, console tails) cuts it here, so a past run is judged exactly as it was live:

* a line ends at ``\\n`` only; one ``\\r`` before it is dropped (serial consoles send ``\\r\\n``).
  A lone ``\\r`` inside a line, a form feed or any other control character stays part of the
  line: ``str.splitlines()`` would cut there and turn ``...put ok\\r[2.5] random`` into a
  marker line the live run never saw;
* a line's time is when its ``\\n`` arrived; a last line without a newline (the stream ended)
  gets the time of its last fragment.
"""

from __future__ import annotations


def clean_line(line: str) -> str:
    """A line without its line ending (``\\n`` and one ``\\r`` before it)."""
    line = line.removesuffix("\n")
    return line.removesuffix("\r")


def split_lines(text: str) -> list[str]:
    """Complete and trailing lines of a whole text (a file), by the rule above."""
    if not text:
        return []
    pieces = text.split("\n")
    if pieces[-1] == "":
        pieces.pop()
    return [clean_line(piece) for piece in pieces]


class LineSplitter:
    """Cuts timed chunks of any size into timed lines (see the module docstring)."""

    def __init__(self) -> None:
        self._partial = ""
        self._partial_at: float | None = None

    @property
    def pending(self) -> str:
        """The text of the line not yet ended by a newline."""
        return self._partial

    def feed(self, text: str, at: float | None) -> list[tuple[str, float | None]]:
        """The lines this chunk completes, each with the time of the chunk (its newline)."""
        if not text:
            return []
        pieces = (self._partial + text).split("\n")
        self._partial = pieces.pop()
        self._partial_at = at if self._partial else None
        return [(clean_line(line), at) for line in pieces]

    def flush(self) -> tuple[str, float | None] | None:
        """The unfinished last line, timed by its last fragment (None if there is none)."""
        if not self._partial:
            return None
        line, at = clean_line(self._partial), self._partial_at
        self._partial, self._partial_at = "", None
        return line, at
