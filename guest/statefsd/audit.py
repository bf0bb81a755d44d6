"""The console audit of denied requests, rate-limited so a hostile client cannot flood it.

Each denial is one line, ``statefsd: denied uid=<uid> op=<op> key=<key>``, while a token bucket
(``AUDIT_BURST`` lines at once, refilled at ``AUDIT_LINES_PER_SECOND``) has tokens. Denials
beyond that are counted, not printed, and the next line that may be printed is preceded by
``statefsd: audit: <n> denials not shown (rate limit)``: the console says how much it missed.
The counters are in STATS (``server_denied``, ``server_denied_unshown``).
"""

import time
from collections.abc import Callable

from guest.console import emit

#: Denial lines printed back to back before the rate limit applies.
AUDIT_BURST = 20
#: Sustained denial lines per second.
AUDIT_LINES_PER_SECOND = 2.0


class DenialAudit:
    """Prints denials within the rate limit and counts all of them."""

    def __init__(
        self,
        *,
        name: str = "statefsd",
        burst: int = AUDIT_BURST,
        per_second: float = AUDIT_LINES_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], None] = emit,
    ) -> None:
        self.name = name
        self.burst = burst
        self.per_second = per_second
        self._clock = clock
        self._write = write
        self._tokens = float(burst)
        self._last = clock()
        self.denied = 0
        self.unshown = 0
        self._pending_unshown = 0

    def denial(self, uid: int, op: str, key: str) -> None:
        """Record one denied request (``key`` is ``-`` for an operation without one)."""
        self.denied += 1
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._tokens < 1.0:
            self.unshown += 1
            self._pending_unshown += 1
            return
        self._tokens -= 1.0
        if self._pending_unshown:
            self._write(
                f"{self.name}: audit: {self._pending_unshown} denials not shown (rate limit)"
            )
            self._pending_unshown = 0
        self._write(f"{self.name}: denied uid={uid} op={op} key={key}")
