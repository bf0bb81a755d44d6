"""Read what the guest scripts printed: ``BENCH:`` measurements, ``PROF|`` import times,
kernel timestamps, the power-cut writer's progress."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

Lines = list[tuple[float | None, str]]

_BENCH = re.compile(r"BENCH: (?P<name>[\w.-]+)(?P<fields>(?: [\w.-]+=[^\s]+)*)\s*$")
_IMPORT = re.compile(r"PROF\|(?P<root>[\w.]+)\| import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
_KERNEL = re.compile(r"\[\s*(\d+\.\d+)\] (.*)$")


def bench_lines(lines: Lines) -> dict[str, list[dict[str, float | str]]]:
    """``{name: [{field: value, "at": host time}, ...]}`` in console order."""
    found: dict[str, list[dict[str, float | str]]] = defaultdict(list)
    for at, line in lines:
        match = _BENCH.search(line)
        if not match:
            continue
        fields: dict[str, float | str] = {"at": at if at is not None else float("nan")}
        for pair in match["fields"].split():
            key, _, value = pair.partition("=")
            try:
                fields[key] = float(value)
            except ValueError:
                fields[key] = value
        found[match["name"]].append(fields)
    return dict(found)


@dataclass(frozen=True)
class ImportTime:
    module: str
    self_us: int
    cumulative_us: int
    depth: int


def import_times(lines: Lines) -> dict[str, list[ImportTime]]:
    """``{imported module: rows}``: the ``-X importtime`` output the imports script relayed
    as ``PROF|<module>|`` lines, one tree per module (the interpreter's start-up included)."""
    trees: dict[str, list[ImportTime]] = defaultdict(list)
    for _, line in lines:
        match = _IMPORT.search(line)
        if match:
            trees[match["root"]].append(
                ImportTime(match[5], int(match[2]), int(match[3]), len(match[4]) // 2)
            )
    return dict(trees)


def direct_imports(rows: list[ImportTime], root: str) -> list[ImportTime]:
    """The modules ``root`` itself imported (depth 1 under it), with their cumulative cost.

    importtime prints a module after everything it imported, so ``root``'s children are the
    depth-1 rows between the previous depth-0 row and ``root``'s own row.
    """
    end = next((i for i, row in enumerate(rows) if row.module == root and row.depth == 0), None)
    if end is None:
        return []
    start = end
    while start > 0 and rows[start - 1].depth > 0:
        start -= 1
    return [row for row in rows[start:end] if row.depth == 1]


def kernel_events(lines: Lines) -> list[tuple[float | None, float, str]]:
    """``(host seconds since launch, kernel seconds since boot, text)`` of kernel lines."""
    events = []
    for at, line in lines:
        match = _KERNEL.search(line)
        if match:
            events.append((at, float(match[1]), match[2]))
    return events


_INITCALL = re.compile(
    r"initcall (\S+?)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?(?: \[\S+\])? returned "
    r"(-?\d+) after (\d+) usecs"
)


def initcalls(lines: Lines) -> list[tuple[str, int]]:
    """``(initcall, microseconds)`` from a boot with ``initcall_debug``, slowest first."""
    found = [(m[1], int(m[3])) for _, line in lines if (m := _INITCALL.search(line))]
    return sorted(found, key=lambda item: item[1], reverse=True)


def powercut_rate(lines: Lines) -> dict[str, float] | None:
    """Durable batches per second from ``POWERCUT: acked <i>`` host arrival times, and the
    writer's own figure from ``POWERCUT: wrote N in X s``."""
    acked = [at for at, line in lines if "POWERCUT: acked" in line and at is not None]
    result: dict[str, float] = {}
    if len(acked) >= 2 and acked[-1] > acked[0]:
        result["acked"] = len(acked)
        result["host_rate"] = (len(acked) - 1) / (acked[-1] - acked[0])
    for _, line in lines:
        match = re.search(r"POWERCUT: wrote (\d+) in ([\d.]+) s", line)
        if match and float(match[2]) > 0:
            result["guest_rate"] = int(match[1]) / float(match[2])
    return result or None
