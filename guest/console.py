"""Console output for the marker contract.

Markers are the product's output, read by the host harness from the serial console. Each line
goes out in a single ``write(2)`` on file descriptor 1, so two processes printing at once can
interleave whole lines but never split one marker across another's bytes.
"""

import os

_STDOUT_FD = 1


def emit(line: str) -> None:
    """Write one console line atomically (one write call, newline included)."""
    data = (line.rstrip("\n") + "\n").encode("utf-8", "backslashreplace")
    view = memoryview(data)
    while view:
        written = os.write(_STDOUT_FD, view)
        view = view[written:]


def emit_traceback() -> None:
    """Print the exception being handled, line by line (``traceback`` is imported only here:
    it drags in ``linecache`` and ``tokenize``, which a healthy boot never needs)."""
    import traceback

    for line in traceback.format_exc().splitlines():
        emit(line)
