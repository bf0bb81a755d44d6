"""The nbdkit Python plugin (API version 2) that serves the VM's disk through the cache.

Run by nbdkit's embedded interpreter, never imported by the harness::

    PYTHONPATH=<repo> nbdkit -f -U nbd.sock python harness/powercut/plugin.py \\
        backing=disk.img state=<state dir>

Every decision is in :class:`harness.powercut.cache.WriteBackCache`; this file only maps NBD
requests onto it. It must answer ``can_flush`` true: with false, QEMU still shows the guest a
write-back cache but sends no flushes at all. A FUA write is handled as a write plus a flush.
Requests are serialized (one cache, one connection at a time is all QEMU makes). The cache is
created in ``get_ready``, so a state directory with an unresolved cut stops nbdkit before it
listens, with the reason in its log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbdkit

from harness.powercut.cache import WriteBackCache

API_VERSION = 2

_settings: dict[str, str] = {}
_cache: WriteBackCache | None = None


def thread_model() -> int:
    return nbdkit.THREAD_MODEL_SERIALIZE_ALL_REQUESTS


def config(key: str, value: str) -> None:
    if key not in ("backing", "state"):
        raise RuntimeError(f"unknown parameter {key}= (expected backing=FILE state=DIR)")
    _settings[key] = value


def config_complete() -> None:
    missing = [key for key in ("backing", "state") if key not in _settings]
    if missing:
        raise RuntimeError(f"missing parameter(s): {', '.join(missing)}")


def get_ready() -> None:
    global _cache
    _cache = WriteBackCache(Path(_settings["backing"]), Path(_settings["state"]))


def cleanup() -> None:
    if _cache is not None:
        _cache.close()


def _disk() -> WriteBackCache:
    if _cache is None:
        raise RuntimeError("the cache is not open (get_ready did not run)")
    return _cache


def open(readonly: bool) -> int:  # nbdkit's callback name; it shadows the builtin here only
    return 1


def get_size(_handle: Any) -> int:
    return _disk().size


def can_write(_handle: Any) -> bool:
    return True


def can_flush(_handle: Any) -> bool:
    return True


def can_fua(_handle: Any) -> int:
    return nbdkit.FUA_NATIVE


def can_trim(_handle: Any) -> bool:
    return False


def can_zero(_handle: Any) -> bool:
    return False  # QEMU then writes zeroes as data: one path through the cache


def can_multi_conn(_handle: Any) -> bool:
    return False


def is_rotational(_handle: Any) -> bool:
    return False


def pread(_handle: Any, buf: bytearray, offset: int, _flags: int) -> None:
    buf[:] = _disk().read(offset, len(buf))


def pwrite(_handle: Any, buf: bytes, offset: int, flags: int) -> None:
    disk = _disk()
    disk.write(offset, bytes(buf))
    if flags & nbdkit.FLAG_FUA:
        disk.flush()


def flush(_handle: Any, _flags: int) -> None:
    _disk().flush()
