"""``--shard K/N``: which part of a campaign one machine runs, deterministically.

Item ``i`` (a guest run's seed index, a power-cut cycle) falls to shard ``i % N + 1``: every
item falls to exactly one shard whatever ``N`` is, and the same flags always pick the same
items, so a CI matrix of ``N`` jobs covers the campaign once and a failing job is re-run alone.
"""

from __future__ import annotations

import re

from harness.errors import ConfigError

_SHARD = re.compile(r"^(\d+)/(\d+)$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``; ConfigError unless ``1 <= K <= N``."""
    match = _SHARD.match(text.strip())
    if match is None:
        raise ConfigError(f"--shard wants K/N (e.g. 2/4), got {text!r}")
    index, count = int(match[1]), int(match[2])
    if not 1 <= index <= count:
        raise ConfigError(f"--shard {text}: need 1 <= K <= N")
    return index, count


def falls_to(item: int, shard: tuple[int, int]) -> bool:
    """Does item ``item`` (0-based) belong to ``shard``?"""
    index, count = shard
    return item % count == index - 1
