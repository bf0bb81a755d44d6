"""The data every engine is fed: 64-byte keys, 256-byte values, from a fixed seed.

Keys are ``/state/bench/`` plus 51 hex digits, so they are valid statefs keys (normalized paths
under ``/state/``) and exactly 64 bytes of UTF-8; sqlite3 and lmdb get the same bytes. Random
hex rather than a counter, so no engine benefits from keys arriving in sorted order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

KEY_BYTES = 64
VALUE_BYTES = 256
KEY_PREFIX = "/state/bench/"
SEED = 20261124
_HEX_DIGITS = KEY_BYTES - len(KEY_PREFIX)


@dataclass(frozen=True)
class Dataset:
    """``count`` distinct keys with one value each, and a random lookup order."""

    keys: list[str]
    values: list[bytes]

    def lookups(self, count: int, among: int | None = None, seed: int = SEED + 1) -> list[str]:
        """``count`` keys drawn uniformly (with replacement) from the first ``among`` keys, in
        a fixed random order."""
        rng = random.Random(seed)
        pool = self.keys[: among or len(self.keys)]
        return [rng.choice(pool) for _ in range(count)]


def make_keys(count: int, seed: int = SEED) -> list[str]:
    rng = random.Random(seed)
    keys: list[str] = []
    seen: set[str] = set()
    while len(keys) < count:
        key = f"{KEY_PREFIX}{rng.getrandbits(_HEX_DIGITS * 4):0{_HEX_DIGITS}x}"
        if key not in seen:
            seen.add(key)
            keys.append(key)
    return keys


def make_dataset(count: int, seed: int = SEED, *, distinct_values: int | None = None) -> Dataset:
    """``count`` keys and values; ``distinct_values`` caps how many different values are made
    (values are cycled), which keeps a million-record journal cheap to generate."""
    rng = random.Random(seed ^ 0x5EED)
    pool = min(count, distinct_values or count)
    values = [rng.randbytes(VALUE_BYTES) for _ in range(pool)]
    keys = make_keys(count, seed)
    return Dataset(keys, [values[i % pool] for i in range(count)])
