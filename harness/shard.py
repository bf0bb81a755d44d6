"""Splitting a campaign across machines: ``--shard K/N``, and the flags every campaign shares.

Item ``i`` (a guest run's seed index, a power-cut cycle) falls to shard ``i % N + 1``: every
item falls to exactly one shard whatever ``N`` is, and the same flags always pick the same
items, so a CI matrix of ``N`` jobs covers the campaign once and a failing job is re-run alone.
Each shard writes a report (``--report``); ``merge R...`` combines them into one verdict and
``--update-doc`` writes the figures into a doc block (:mod:`harness.docfigures`). Both
campaigns (``powercut``, ``crash-states``) declare these flags here, once.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

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


def add_split_options(
    group: argparse._ArgumentGroup,
    *,
    items: str,
    needs: str = "",
    report_help: str,
    doc_block: str,
) -> None:
    """``--shard``, ``--report``, ``--update-doc``, ``--doc-block`` and ``merge R...``.

    ``items`` names what a shard runs ("cycles", "seeds"); ``needs``, a flag sharding needs."""
    group.add_argument(
        "--shard",
        type=parse_shard,
        default=(1, 1),
        metavar="K/N",
        help=f"run the {items} that fall to shard K of N" + (f" (needs {needs})" if needs else ""),
    )
    group.add_argument("--report", type=Path, default=None, help=report_help)
    group.add_argument(
        "--update-doc",
        type=Path,
        default=None,
        metavar="MD",
        help="write the figures and verdict into MD's <!-- figures:BLOCK --> block",
    )
    group.add_argument(
        "--doc-block",
        default=doc_block,
        metavar="BLOCK",
        help=f"which figures block --update-doc rewrites (default {doc_block})",
    )
    group.add_argument(
        "merge_reports",
        nargs="*",
        metavar="merge REPORT",
        help="`merge a.json b.json ...`: combine shard reports into one table and verdict",
    )


def wants_merge(args: argparse.Namespace) -> bool:
    """``<campaign> merge R...``: the positional words, led by ``merge``."""
    words = args.merge_reports
    if words and words[0] != "merge":
        raise ConfigError(f"unknown argument {words[0]!r} (did you mean `merge`?)")
    return bool(words)
