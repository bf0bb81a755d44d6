"""``python -m bench profile``: where the store's time goes, for every host target it misses.

cProfile inflates Python-level calls, so besides its top functions this module times the
pieces directly, each in isolation, with the same data as the benchmark:

* **batched put**: the ``put`` loop, then ``sync`` split into the record CRC, the record's
  assembly (one copy of the payload), ``pwrite`` and ``fdatasync``;
* **reopen**: replay of a plain journal per record (header checks, three CRC calls, the
  operation loop) and of a compacted one (the operation loop, one CRC over megabytes), plus
  the damage scan past the end, which reads ``record_limit`` bytes however small the journal;
* **CRC-32C**: crcmod (what the store uses) against the ``crc32c`` package when installed,
  the drop-in a proposal would switch to.
"""

from __future__ import annotations

import cProfile
import datetime as dt
import io
import os
import pstats
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import journals
from bench.data import make_dataset
from bench.env import describe_machine, sample_load
from bench.results import write_json
from guest.statefs import FileBlockDevice, Store
from guest.statefs.crc import crc32c
from guest.statefs.layout import encode_record
from guest.statefs.replay import _RegionReader, _scan_for_later_records, replay

REPEATS = 7


def best_of(action: Callable[[], object], repeats: int = REPEATS) -> float:
    """Fastest of ``repeats`` timings (seconds): the cost without other processes' noise."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def top_functions(action: Callable[[], object], limit: int = 12) -> list[str]:
    profiler = cProfile.Profile()
    profiler.enable()
    action()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(limit)
    return [line for line in out.getvalue().splitlines() if line.strip()][-limit - 1 :]


def batched_put(directory: Path, count: int = 10_000) -> dict[str, Any]:
    data = make_dataset(count)
    items = list(zip(data.keys, data.values, strict=True))
    path = directory / "batch.img"

    def fresh() -> Store:
        dev = FileBlockDevice.create(path, 64 << 20, sector_size=4096, zero_fill=True)
        return Store.format(dev)

    def put_loop(store: Store) -> None:
        put = store.put
        for key, value in items:
            put(key, value)

    timings: dict[str, list[float]] = {"put_loop": [], "sync": [], "overwrite_loop": []}
    for _ in range(5):
        store = fresh()
        started = time.perf_counter()
        put_loop(store)
        timings["put_loop"].append(time.perf_counter() - started)
        started = time.perf_counter()
        store.sync()
        timings["sync"].append(time.perf_counter() - started)
        started = time.perf_counter()
        put_loop(store)  # keys now live: the normalization check is skipped
        timings["overwrite_loop"].append(time.perf_counter() - started)
        store.close(sync=False)
    store = fresh()
    put_loop(store)
    payload = bytes(store._pending)
    sb = store.superblock
    record = encode_record(
        kind=1,
        epoch=sb.epoch,
        seq=1,
        op_count=count,
        payload=payload,
        salt=sb.salt,
        sector_size=sb.sector_size,
    )
    fd = os.open(path, os.O_RDWR)
    try:
        write = best_of(lambda: os.pwrite(fd, record, 8192), 3)
        fsync = best_of(lambda: (os.pwrite(fd, record, 8192), os.fdatasync(fd)), 3) - write
    finally:
        os.close(fd)
    parts = {
        "put_loop_s": min(timings["put_loop"]),
        "put_loop_live_keys_s": min(timings["overwrite_loop"]),
        "sync_s": min(timings["sync"]),
        "record_crc_s": best_of(lambda: crc32c(payload, 12345)),
        "record_assembly_s": best_of(
            lambda: encode_record(
                kind=1,
                epoch=sb.epoch,
                seq=1,
                op_count=count,
                payload=payload,
                salt=sb.salt,
                sector_size=sb.sector_size,
            )
        ),
        "pwrite_s": write,
        "fdatasync_s": fsync,
        "payload_bytes": len(payload),
    }
    store.close(sync=False)
    store = fresh()
    parts["cprofile_put_loop"] = top_functions(lambda: put_loop(store))
    store.close(sync=False)
    path.unlink()
    return parts


def durable_put_cpu(directory: Path, count: int = 2000) -> dict[str, Any]:
    """What statefs adds to each durable put besides the disk: put + sync on a device whose
    flush does nothing (the pwrite is kept), per put, and with the physical limit's own
    pwrite alone for comparison."""
    data = make_dataset(count)
    result: dict[str, Any] = {}
    for sector_size in (512, 4096):
        path = directory / f"durable-{sector_size}.img"
        FileBlockDevice.create(path, 64 << 20, sector_size=sector_size, zero_fill=True)
        samples = []
        for _ in range(3):
            store = Store.format(journals.NoFlushFileDevice(path, sector_size=sector_size))
            put, sync = store.put, store.sync
            started = time.perf_counter()
            for key, value in zip(data.keys, data.values, strict=True):
                put(key, value)
                sync()
            samples.append((time.perf_counter() - started) / count)
            compactions = store.counters["compactions"]
            store.close(sync=False)
        result[f"statefs_{sector_size}_us"] = min(samples) * 1e6
        result[f"statefs_{sector_size}_compactions"] = compactions
        path.unlink()
    path = directory / "pwrite.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        block = bytes(4096)
        pwrite = best_of(lambda: [os.pwrite(fd, block, i * 4096) for i in range(count)], 3)
    finally:
        os.close(fd)
        path.unlink()
    result["pwrite_4096_us"] = pwrite / count * 1e6
    return result


def _replay_parts(journal: journals.Journal) -> dict[str, Any]:
    dev = FileBlockDevice(journal.path, sector_size=journal.sector_size)
    store = Store.open(dev)
    sb = store.superblock
    end = store.replay.end_offset
    store.close(sync=False)
    dev = FileBlockDevice(journal.path, sector_size=journal.sector_size)

    def scan() -> None:
        _scan_for_later_records(_RegionReader(dev, sb), sb, end, 10**12)

    parts = {
        "records": journal.records,
        "open_s": best_of(lambda: Store.open(FileBlockDevice(journal.path)).close(sync=False)),
        "replay_s": best_of(lambda: replay(dev, sb)),
        "damage_scan_s": best_of(scan),
        "record_limit": sb.record_limit,
        "cprofile_open": top_functions(lambda: replay(dev, sb)),
    }
    dev.close()
    return parts


def reopen(directory: Path, live: int = 10_000) -> dict[str, Any]:
    result = {}
    for compact in (False, True):
        path = directory / f"reopen-{int(compact)}.img"
        journal = journals.build(path, records=live, live_keys=live, compact=compact)
        result["compacted" if compact else "plain"] = _replay_parts(journal)
        path.unlink()
    return result


def _reopen_and_batch(directory: Path) -> dict[str, float]:
    """Best-of timings of the two reopen cases and of a 10,000-put batch (put loop + sync)."""
    result = {}
    for compact in (False, True):
        path = directory / f"whatif-{int(compact)}.img"
        journal = journals.build(path, records=10_000, live_keys=10_000, compact=compact)
        result["reopen_compacted_s" if compact else "reopen_plain_s"] = best_of(
            lambda path=journal.path: Store.open(FileBlockDevice(path)).close(sync=False), 9
        )
        path.unlink()
    data = make_dataset(10_000)
    path = directory / "whatif-batch.img"

    def batch() -> None:
        dev = FileBlockDevice.create(path, 64 << 20, sector_size=4096, zero_fill=True)
        store = Store.format(dev)
        started = time.perf_counter()
        for key, value in zip(data.keys, data.values, strict=True):
            store.put(key, value)
        store.sync()
        timings.append(time.perf_counter() - started)
        store.close()

    timings: list[float] = []
    for _ in range(5):
        batch()
    result["batch_10k_s"] = min(timings)
    path.unlink()
    return result


def what_if_crc32c(directory: Path) -> dict[str, Any]:
    """The proposal "CRC-32C from the crc32c package", measured without editing the store: the
    same timings with the store's CRC function swapped in this process only, then restored."""
    try:
        import crc32c as fast
    except ImportError:
        return {"crc32c_package": "not installed"}
    from guest.statefs import layout as layout_module
    from guest.statefs import replay as replay_module

    result = {"as_is": _reopen_and_batch(directory)}
    saved = (layout_module.crc32c, replay_module.crc32c)
    swapped = fast.crc32c
    layout_module.crc32c = replay_module.crc32c = swapped
    try:
        result["with_crc32c"] = _reopen_and_batch(directory)
    finally:
        layout_module.crc32c, replay_module.crc32c = saved
    return result


def crc_speed() -> dict[str, Any]:
    data = os.urandom(3_300_000)
    small = os.urandom(24)
    result: dict[str, Any] = {
        "crcmod_MBps": len(data) / best_of(lambda: crc32c(data)) / 1e6,
        "crcmod_small_call_us": best_of(lambda: [crc32c(small) for _ in range(1000)]) * 1e3,
    }
    try:
        import crc32c as fast  # optional: the drop-in a proposal would switch to
    except ImportError:
        result["crc32c_package"] = "not installed"
        return result
    result["crc32c_MBps"] = len(data) / best_of(lambda: fast.crc32c(data)) / 1e6
    result["crc32c_small_call_us"] = (
        best_of(lambda: [fast.crc32c(small) for _ in range(1000)]) * 1e3
    )
    result["same_result_with_seed"] = fast.crc32c(data, 12345) == crc32c(data, 12345)
    return result


def render(doc: dict[str, Any]) -> str:
    b = doc["batched_put"]
    total = b["put_loop_s"] + b["sync_s"]
    lines = [
        f"Batched put of 10,000 (best of runs): {10_000 / total:,.0f}/s = put loop "
        f"{b['put_loop_s'] * 1e3:.1f} ms ({b['put_loop_s'] / 1e4 * 1e6:.2f} us/put; "
        f"{b['put_loop_live_keys_s'] * 1e3:.1f} ms when the keys are already live) + sync "
        f"{b['sync_s'] * 1e3:.1f} ms",
        f"  sync = CRC {b['record_crc_s'] * 1e3:.1f} ms over {b['payload_bytes']:,} B + record "
        f"assembly {b['record_assembly_s'] * 1e3:.1f} ms (includes the CRC) + pwrite "
        f"{b['pwrite_s'] * 1e3:.1f} ms + fdatasync {b['fdatasync_s'] * 1e3:.1f} ms",
        "  cProfile of the put loop:",
        *("    " + line for line in b["cprofile_put_loop"]),
    ]
    for kind, r in doc["reopen"].items():
        lines.append(
            f"Reopen of 10,000 keys, {kind}: open {r['open_s'] * 1e3:.1f} ms, replay "
            f"{r['replay_s'] * 1e3:.1f} ms ({r['replay_s'] / max(r['records'], 1) * 1e6:.2f} "
            f"us/record over {r['records']:,} records), of which the damage scan "
            f"{r['damage_scan_s'] * 1e3:.1f} ms (reads record_limit = {r['record_limit']:,} B)"
        )
        lines += ["  cProfile of replay:", *("    " + line for line in r["cprofile_open"])]
    d = doc["durable_put"]
    lines.append(
        f"Durable put without the fdatasync (CPU + pwrite): statefs 512 B sectors "
        f"{d['statefs_512_us']:.1f} us, 4096 B sectors {d['statefs_4096_us']:.1f} us "
        f"({d['statefs_4096_compactions']} compactions in 2,000 puts); a bare 4 KiB pwrite "
        f"{d['pwrite_4096_us']:.1f} us"
    )
    crc = doc["crc"]
    lines.append(
        f"CRC-32C: crcmod {crc['crcmod_MBps']:,.0f} MB/s, {crc['crcmod_small_call_us']:.2f} "
        f"us per 24-byte call"
        + (
            f"; crc32c package {crc['crc32c_MBps']:,.0f} MB/s, "
            f"{crc['crc32c_small_call_us']:.2f} us per call, same values: "
            f"{crc['same_result_with_seed']}"
            if "crc32c_MBps" in crc
            else ""
        )
    )
    what_if = doc.get("what_if_crc32c", {})
    if "with_crc32c" in what_if:
        before, after = what_if["as_is"], what_if["with_crc32c"]
        lines.append("What if the store used the crc32c package (swapped in this process only):")
        for key, label in (
            ("reopen_compacted_s", "reopen, 10,000 keys compacted"),
            ("reopen_plain_s", "reopen, 10,000 keys plain journal"),
            ("batch_10k_s", "10,000 puts + sync"),
        ):
            lines.append(f"  {label}: {before[key] * 1e3:.1f} ms -> {after[key] * 1e3:.1f} ms")
    return "\n".join(lines)


def main(directory: Path, results_dir: Path, say=print) -> int:
    with tempfile.TemporaryDirectory(prefix="sq-bench-prof-", dir=directory) as tmp:
        root = Path(tmp)
        doc = {
            "kind": "profile",
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": describe_machine().as_dict(),
            "load_before": asdict(sample_load(0.5)),
            "batched_put": batched_put(root),
            "reopen": reopen(root),
            "durable_put": durable_put_cpu(root),
            "crc": crc_speed(),
            "what_if_crc32c": what_if_crc32c(root),
        }
    say(render(doc))
    say(f"\nwrote {write_json(results_dir, 'profile', doc)}")
    return 0
