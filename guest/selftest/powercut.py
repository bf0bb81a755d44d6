"""``sq.mode=powercut``: one boot of a power-cut campaign.

Each boot first checks what the previous boot left (if anything), then writes under load until
the harness cuts the power. The host is the judge of durability: the writer prints every
sequence number it issues *before* the write and every one whose ``sync()`` returned *after*
it; the next boot prints what it recovered, and the harness checks that every acknowledged
write is there and nothing beyond the last issued one is.

The workload is a sliding window over a log, so the store compacts regularly and never fills:
write ``i`` puts ``/state/powercut/log/<i>`` (a value derived from the run's nonce and ``i``,
sized to span one to several sectors), deletes the entry ``WINDOW`` writes older, and sets
``/state/powercut/head`` to ``i``, all in one synced batch.

The check (this boot's own, before the harness's): ``head`` is some ``m``; the log holds
exactly the entries ``max(1, m - WINDOW + 1) .. m``, each with exactly its derived value;
nothing else is under ``/state/powercut/``. Then ``SELFTEST: powercut recover ok head=<m>``.
"""

import hashlib
import time

from guest.console import emit
from guest.statefs.errors import StatefsError
from guest.statefsd.client import StatefsClient

PREFIX = "/state/powercut"
HEAD_KEY = f"{PREFIX}/head"
WINDOW = 32
#: A boot stops writing after this many writes if the power was not cut (it then powers off).
MAX_WRITES_PER_BOOT = 100_000


def log_key(seq: int) -> str:
    return f"{PREFIX}/log/{seq:010d}"


def value_for(nonce: str, seq: int) -> bytes:
    """Deterministic value of write ``seq``: 16 bytes to ~2.5 KiB, so records span 1-6 sectors."""
    digest = hashlib.sha256(f"{nonce}:{seq}".encode()).digest()
    size = 16 + (digest[0] * 10)
    return (digest * (size // len(digest) + 1))[:size]


def check(client: StatefsClient, nonce: str) -> int:
    """Verify the recovered state; return the head (0 on an empty store). Raises ValueError
    naming the first discrepancy."""
    keys = client.list(PREFIX)
    if not keys:
        return 0
    try:
        head = int(client.get(HEAD_KEY))
    except (StatefsError, ValueError) as exc:
        raise ValueError(f"head unreadable: {exc}") from None
    expected = [log_key(seq) for seq in range(max(1, head - WINDOW + 1), head + 1)]
    log = [key for key in keys if key != HEAD_KEY]
    if log != expected:
        extra = sorted(set(log) - set(expected))[:3]
        missing = sorted(set(expected) - set(log))[:3]
        raise ValueError(f"head={head} but log has extra {extra} missing {missing}")
    for seq in range(max(1, head - WINDOW + 1), head + 1):
        if client.get(log_key(seq)) != value_for(nonce, seq):
            raise ValueError(f"value of write {seq} is altered")
    return head


def write(client: StatefsClient, nonce: str, head: int, limit: int) -> int:
    """Write until the power goes (or ``limit`` writes); returns the last acknowledged seq."""
    seq = head
    for seq in range(head + 1, head + 1 + limit):
        operations: list[tuple[str, bytes | None]] = [
            (log_key(seq), value_for(nonce, seq)),
            (HEAD_KEY, str(seq).encode("ascii")),
        ]
        if seq - WINDOW >= 1:
            operations.append((log_key(seq - WINDOW), None))
        emit(f"POWERCUT: issue {seq}")
        client.batch(operations)
        emit(f"POWERCUT: acked {seq}")
    return seq


def run_powercut(params: dict[str, str], statefsd_socket: str) -> bool:
    """Check, then write. Returns False if the check failed (after printing FAIL)."""
    nonce = params.get("sq.nonce", "")
    limit = int(params.get("sq.writes", str(MAX_WRITES_PER_BOOT)))
    with StatefsClient.connect(statefsd_socket, wait=5.0) as client:
        try:
            head = check(client, nonce)
        except ValueError as exc:
            emit(f"SELFTEST: powercut recover FAIL {exc}")
            return False
        emit(f"POWERCUT: recovered head={head}")
        emit(f"SELFTEST: powercut recover ok head={head}")
        started = time.monotonic()
        last = write(client, nonce, head, limit)
        elapsed = time.monotonic() - started
        emit(f"POWERCUT: wrote {last - head} in {elapsed:.2f} s (no power cut came)")
    return True
