"""A line per build step with its duration, for people watching a terminal.

Kept out of the build logic: the builder calls :meth:`Progress.step` around each step and this
class decides whether to print (``enabled``) or only log at debug level.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, enabled: bool, stream: TextIO | None = None, prefix: str = "image") -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.started = time.monotonic()

    def note(self, message: str) -> None:
        log.info("%s", message)
        if self.enabled:
            print(f"{self.prefix}: {message}", file=self.stream, flush=True)

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        start = time.monotonic()
        log.debug("step %s: started", label)
        try:
            yield
        finally:
            elapsed = time.monotonic() - start
            log.debug("step %s: %.2fs", label, elapsed)
            if self.enabled:
                print(f"{self.prefix}: {label:<34} {elapsed:6.2f}s", file=self.stream, flush=True)

    def done(self, message: str) -> None:
        self.note(f"{message} ({time.monotonic() - self.started:.2f}s)")
