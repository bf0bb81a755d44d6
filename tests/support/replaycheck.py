"""Open a damaged image the way the fuzzers need: measured, bounded, and judged.

Every replay fuzzer asks the same questions of one image: did opening end in a state or a
:class:`StatefsError` (and nothing else), how long did it take, how much memory and how many
device bytes did it use, and is the state made only of keys and values someone wrote. This
module answers them once so each fuzzer states only its own model.
"""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass

from guest.statefs import MemoryBlockDevice, StatefsError, Store, StoreConfig, check_device
from guest.statefs.layout import SUPERBLOCK_SLOTS
from guest.statefs.paths import is_normal_key

from support.faultdev import FaultPlan, FaultyDevice
from support.tally import Outcomes, outcome_name

#: No open of a fuzz image (at most a few MiB) may take longer than this. Real opens take
#: milliseconds; the margin absorbs a loaded CI machine, and a replay that loops forever or
#: scans quadratically still trips it.
MAX_OPEN_SECONDS = 5.0


@dataclass
class Opened:
    """The outcome of opening one image read-only."""

    state: dict[str, bytes] | None
    error: StatefsError | None
    seconds: float
    peak_bytes: int
    bytes_read: int
    record_limit: int = 0
    region_bytes: int = 0
    #: The superblock copy not in use was damaged: open may also read the other region once,
    #: to find out whether the damaged copy had been current (docs: "Superblock copies").
    peer_damaged: bool = False


def open_image(image: bytes, sector_size: int) -> Opened:
    """Open ``image`` read-only (so nothing is sealed) and measure it.

    tracemalloc runs only around the open itself: tracing the fuzzer's own work as well would
    make it several times slower and measure nothing of interest.
    """
    plan = FaultPlan()
    dev = FaultyDevice(MemoryBlockDevice.from_image(image, sector_size), plan)
    error: StatefsError | None = None
    tracemalloc.start()
    started = time.perf_counter()
    try:
        store = Store.open(dev, StoreConfig(read_only=True))
    except StatefsError as exc:
        error = exc
    finally:
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if error is not None:
        return Opened(None, error, seconds, peak, plan.bytes_read)
    state = {key: store.get(key) for key in store.list()}
    sb = store.superblock
    peer_damaged = store._peer_damaged
    store.close(sync=False)
    return Opened(
        state, None, seconds, peak, plan.bytes_read, sb.record_limit, sb.region_bytes, peer_damaged
    )


def check_bounds(opened: Opened, image_bytes: int, sector_size: int) -> None:
    """The documented bounds: time, memory proportional to the device (never more), and device
    bytes read at most the superblocks, one region, and the damage-scan window (and the other
    region once more when a superblock copy is damaged)."""
    assert opened.seconds < MAX_OPEN_SECONDS, f"open took {opened.seconds:.2f} s"
    assert opened.peak_bytes <= 4 * image_bytes + (1 << 20), (
        f"open used {opened.peak_bytes} bytes for a {image_bytes}-byte device"
    )
    if opened.state is not None:
        limit = (
            SUPERBLOCK_SLOTS * sector_size
            + opened.region_bytes * (2 if opened.peer_damaged else 1)
            + opened.record_limit
            + sector_size
        )
        assert opened.bytes_read <= limit, f"read {opened.bytes_read} bytes, bound {limit}"
    else:
        assert opened.bytes_read <= 2 * image_bytes, f"read {opened.bytes_read} bytes"


def check_written(state: dict[str, bytes], history: dict[str, frozenset[bytes]]) -> None:
    """Every recovered key is normal and every value is one the workload put for that key."""
    for key, value in state.items():
        assert is_normal_key(key), f"replay produced a non-normal key {key!r}"
        assert value in history.get(key, ()), (
            f"replay invented {key!r} = {value[:40]!r}... ({len(value)} bytes)"
        )


def count_open(outcomes: Outcomes, opened: Opened) -> None:
    outcomes.count("ok" if opened.error is None else outcome_name(opened.error))
    outcomes.observe(opened.seconds, opened.peak_bytes)


def fsck_agrees(image: bytes, sector_size: int, opened: Opened) -> None:
    """check_device never raises on any image and agrees with open about damage."""
    report = check_device(MemoryBlockDevice.from_image(image, sector_size))
    if opened.error is None:
        assert report.ok, report.lines()
        assert report.live_keys == len(opened.state or {})
    else:
        assert not report.ok
