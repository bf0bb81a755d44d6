"""Errors of the power-cut machinery, under the harness's one root.

::

    HarnessError
     └── PowerCutError          anything in harness.powercut
          ├── CacheFormatError  a journal or undo record is damaged where it must not be
          ├── UnresolvedCache   the disk server would start on writes nobody decided about
          └── DiskServerError   nbdkit did not start or did not stop: argv, exit code, log

A cycle whose guest lost data is not an exception: it is a verdict in the campaign's report.
This module imports only :mod:`harness.errors` (standard library only), because nbdkit's
embedded Python loads it through :mod:`harness.powercut.cache`.
"""

from __future__ import annotations

from harness.errors import HarnessError


class PowerCutError(HarnessError):
    """Root of the power-cut errors."""


class CacheFormatError(PowerCutError):
    """A journal or undo file is damaged in a way a power cut cannot explain (not a torn tail);
    the message names the file, the offset and what was wrong."""


class UnresolvedCache(PowerCutError):
    """A pending journal or undo record is still there: the writes of the last cut have not
    been resolved, and starting would silently decide their fate. ``paths`` names them."""

    def __init__(self, message: str, *, paths: tuple[str, ...]) -> None:
        super().__init__(message)
        self.paths = paths


class DiskServerError(PowerCutError):
    """nbdkit failed to start or stop; the evidence holds its command line and log tail."""
