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

Large batches (``sq.value_max=<bytes>``, ``sq.request_kib=<KiB>``): values up to ``value_max``
bytes, and the disk's largest request (the block queue's ``max_sectors_kb``) lowered, so one
batch's record reaches the disk as several requests before its flush. A power cut then finds
several writes pending, and the harness's ``subset`` and ``torn`` fates have a choice of them.

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
#: Values are 16 bytes to this many (the default spans one to six sectors).
DEFAULT_VALUE_MAX = 2566
#: ``sq.value_max`` bounds: a record must stay far below the store's record limit.
MAX_VALUE_MAX = 64 * 1024
#: A boot stops writing after this many writes if the power was not cut (it then powers off).
MAX_WRITES_PER_BOOT = 100_000


def log_key(seq: int) -> str:
    return f"{PREFIX}/log/{seq:010d}"


def value_for(nonce: str, seq: int, value_max: int = DEFAULT_VALUE_MAX) -> bytes:
    """Deterministic value of write ``seq``: 16 to ``value_max`` bytes (by default ~2.5 KiB,
    so records span 1-6 sectors)."""
    digest = hashlib.sha256(f"{nonce}:{seq}".encode()).digest()
    size = 16 + digest[0] * (value_max - 16) // 255
    return (digest * (size // len(digest) + 1))[:size]


def check(client: StatefsClient, nonce: str, value_max: int = DEFAULT_VALUE_MAX) -> int:
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
        if client.get(log_key(seq)) != value_for(nonce, seq, value_max):
            raise ValueError(f"value of write {seq} is altered")
    return head


def write(
    client: StatefsClient,
    nonce: str,
    head: int,
    limit: int,
    value_max: int = DEFAULT_VALUE_MAX,
) -> int:
    """Write until the power goes (or ``limit`` writes); returns the last acknowledged seq."""
    seq = head
    for seq in range(head + 1, head + 1 + limit):
        operations: list[tuple[str, bytes | None]] = [
            (log_key(seq), value_for(nonce, seq, value_max)),
            (HEAD_KEY, str(seq).encode("ascii")),
        ]
        if seq - WINDOW >= 1:
            operations.append((log_key(seq - WINDOW), None))
        emit(f"POWERCUT: issue {seq}")
        client.batch(operations)
        emit(f"POWERCUT: acked {seq}")
    return seq


def _int_param(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name, str(default))
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {text!r}")
    return int(text)


def value_max_of(params: dict[str, str]) -> int:
    return _int_param(params, "sq.value_max", DEFAULT_VALUE_MAX, 16, MAX_VALUE_MAX)


def limit_requests(params: dict[str, str], disk: str) -> None:
    """``sq.request_kib=<n>``: cap the disk's requests at ``n`` KiB (the block queue's
    ``max_sectors_kb``; 4, one page, is the least the kernel takes). Before statefsd opens the
    disk, so every write of the boot is split the same way."""
    if "sq.request_kib" not in params:
        return
    kib = _int_param(params, "sq.request_kib", 4, 4, 1024)
    name = disk.rsplit("/", 1)[-1]
    with open(f"/sys/block/{name}/queue/max_sectors_kb", "w") as handle:
        handle.write(str(kib))
    emit(f"POWERCUT: requests of at most {kib} KiB on {disk}")


def run_powercut(params: dict[str, str], statefsd_socket: str) -> bool:
    """Check, then write. Returns False if the check failed (after printing FAIL)."""
    nonce = params.get("sq.nonce", "")
    limit = int(params.get("sq.writes", str(MAX_WRITES_PER_BOOT)))
    value_max = value_max_of(params)
    with StatefsClient.connect(statefsd_socket, wait=5.0) as client:
        try:
            head = check(client, nonce, value_max)
        except ValueError as exc:
            emit(f"SELFTEST: powercut recover FAIL {exc}")
            return False
        emit(f"POWERCUT: recovered head={head}")
        emit(f"SELFTEST: powercut recover ok head={head}")
        started = time.monotonic()
        last = write(client, nonce, head, limit, value_max)
        elapsed = time.monotonic() - started
        emit(f"POWERCUT: wrote {last - head} in {elapsed:.2f} s (no power cut came)")
    return True
