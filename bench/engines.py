"""The stores compared, behind one small interface.

Each engine runs its own tight loop (``durable_puts``, ``batched_puts``, ``gets``) with its
idiomatic single-item call, so the timing measures the store and not an adapter layer:

* **statefs**: ``put`` + ``sync`` on a zero-filled :class:`FileBlockDevice` (``pwrite`` +
  ``fdatasync``), at a given sector size;
* **sqlite3**: WAL, ``synchronous=FULL``, a ``WITHOUT ROWID`` table keyed by the text key,
  autocommit ``INSERT OR REPLACE`` for a durable put, ``BEGIN``..``COMMIT`` around a batch;
* **lmdb** (optional ``bench`` dependency): ``sync=True``, one write transaction per durable
  put or per batch, one read transaction for a run of gets.
"""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from time import perf_counter
from typing import Any, Protocol

from guest.statefs import FileBlockDevice, Store, StoreConfig

Items = Sequence[tuple[Any, bytes]]

#: statefs device size: room for the largest batch (10,000 puts = 3.3 MB in one commit
#: group) and for the durable loop's journal between compactions.
STATEFS_DEVICE_BYTES = 64 << 20
LMDB_MAP_BYTES = 1 << 30


class Engine(Protocol):
    name: str

    def key(self, key: str) -> Any:
        """The key as this engine takes it (converted before any timing)."""

    def durable_puts(self, items: Items) -> list[float]:
        """Put and commit each item; returns ``perf_counter()`` after each commit, so the
        caller gets per-put latencies as well as the throughput."""

    def batched_puts(self, items: Items) -> None: ...

    def gets(self, keys: Sequence[Any]) -> int:
        """Look every key up; returns the bytes read (so the loop cannot be optimized away)."""

    def counters(self) -> dict[str, int]:
        """The engine's own I/O counters, if it keeps any."""

    def close(self) -> None: ...


class StatefsEngine:
    def __init__(
        self, directory: Path, sector_size: int = 4096, device_bytes: int = STATEFS_DEVICE_BYTES
    ) -> None:
        self.name = f"statefs-{sector_size}"
        self.path = directory / f"statefs-{sector_size}.img"
        dev = FileBlockDevice.create(
            self.path, device_bytes, sector_size=sector_size, zero_fill=True
        )
        self.store = Store.format(dev, StoreConfig())
        self._baseline = dict(self.store.counters)

    def key(self, key: str) -> str:
        return key

    def durable_puts(self, items: Items) -> list[float]:
        put, sync = self.store.put, self.store.sync
        stamps = []
        for key, value in items:
            put(key, value)
            sync()
            stamps.append(perf_counter())
        return stamps

    def batched_puts(self, items: Items) -> None:
        put = self.store.put
        for key, value in items:
            put(key, value)
        self.store.sync()

    def gets(self, keys: Sequence[Any]) -> int:
        get = self.store.get
        total = 0
        for key in keys:
            total += len(get(key))
        return total

    def counters(self) -> dict[str, int]:
        """Counters since the store was formatted (format's own writes excluded)."""
        return {
            name: self.store.counters[name] - self._baseline.get(name, 0)
            for name in self.store.counters
        }

    def close(self) -> None:
        self.store.close()


class SqliteEngine:
    name = "sqlite3"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "bench.sqlite"
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"sqlite3 refused WAL mode (got {mode})")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")

    def key(self, key: str) -> str:
        return key

    def durable_puts(self, items: Items) -> list[float]:
        execute = self.conn.execute
        sql = "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)"
        stamps = []
        for item in items:
            execute(sql, item)  # autocommit: one transaction, one WAL sync, per put
            stamps.append(perf_counter())
        return stamps

    def batched_puts(self, items: Items) -> None:
        execute = self.conn.execute
        sql = "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)"
        execute("BEGIN")
        for item in items:
            execute(sql, item)
        execute("COMMIT")

    def gets(self, keys: Sequence[Any]) -> int:
        execute = self.conn.execute
        sql = "SELECT v FROM kv WHERE k = ?"
        total = 0
        for key in keys:
            total += len(execute(sql, (key,)).fetchone()[0])
        return total

    def counters(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self.conn.close()


class LmdbEngine:
    name = "lmdb"

    def __init__(self, directory: Path) -> None:
        import lmdb

        self.path = directory / "bench.lmdb"
        shutil.rmtree(self.path, ignore_errors=True)
        self.env = lmdb.open(
            str(self.path), map_size=LMDB_MAP_BYTES, sync=True, metasync=True, lock=True
        )

    def key(self, key: str) -> bytes:
        return key.encode("utf-8")

    def durable_puts(self, items: Items) -> list[float]:
        begin = self.env.begin
        stamps = []
        for key, value in items:
            with begin(write=True) as txn:
                txn.put(key, value)
            stamps.append(perf_counter())
        return stamps

    def batched_puts(self, items: Items) -> None:
        with self.env.begin(write=True) as txn:
            put = txn.put
            for key, value in items:
                put(key, value)

    def gets(self, keys: Sequence[Any]) -> int:
        total = 0
        with self.env.begin() as txn:
            get = txn.get
            for key in keys:
                total += len(get(key))
        return total

    def counters(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self.env.close()


def lmdb_available() -> bool:
    return importlib.util.find_spec("lmdb") is not None


def engine_names(sector_sizes: Sequence[int]) -> list[str]:
    names = [f"statefs-{ss}" for ss in sector_sizes] + ["sqlite3"]
    if lmdb_available():
        names.append("lmdb")
    return names


def open_engine(
    name: str, directory: Path, *, statefs_device_bytes: int = STATEFS_DEVICE_BYTES
) -> Engine:
    """A fresh, empty engine of kind ``name`` in ``directory`` (which it may fill)."""
    if name.startswith("statefs-"):
        return StatefsEngine(directory, int(name.split("-", 1)[1]), statefs_device_bytes)
    if name == "sqlite3":
        return SqliteEngine(directory)
    if name == "lmdb":
        return LmdbEngine(directory)
    raise ValueError(f"unknown engine {name!r}")
