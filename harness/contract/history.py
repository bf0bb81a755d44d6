"""The ``markers`` view: replay a past run's console through the contract.

A run directory keeps each boot's ``uart.timestamps`` (lines with seconds since launch), so the
matcher can be run again offline: which marker came when, what was missing, which line failed.
Boots are replayed in order and pass their captured values forward, exactly like the live run,
so the cross-boot checks are replayed too. Nothing here greps for truth: it is the same
matcher fed from a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.artifacts import RUN_SUMMARY, UART_LOG, UART_TIMESTAMPS
from harness.contract.matcher import BootMatcher, Outcome
from harness.contract.spec import Contract
from harness.errors import ConfigError

_STAMPED = re.compile(r"^\s*(\d+(?:\.\d+)?) (.*)$")
_BOOT_DIR = re.compile(r"^boot(\d+)(?:-\d+)?$")


@dataclass
class ReplayedBoot:
    number: int
    directory: Path
    matcher: BootMatcher
    timed: bool


def read_console(directory: Path) -> Iterator[tuple[float | None, str]]:
    """``(seconds or None, line)`` from ``uart.timestamps``, or from ``uart.log`` without times."""
    stamps = directory / UART_TIMESTAMPS
    if stamps.is_file():
        for raw in stamps.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _STAMPED.match(raw)
            if match:
                yield float(match[1]), match[2]
            else:
                yield None, raw
        return
    log_path = directory / UART_LOG
    if not log_path.is_file():
        raise ConfigError(f"{directory} has neither {UART_TIMESTAMPS} nor {UART_LOG}")
    for raw in log_path.read_bytes().decode("utf-8", "replace").splitlines():
        yield None, raw


def boot_dirs(path: Path) -> list[tuple[int, Path]]:
    """The boots of a run directory in order, from run.json or the ``bootN`` names; a
    single boot directory or a ``uart.log`` path gives that one boot."""
    if path.is_file():
        path = path.parent
    summary = path / RUN_SUMMARY
    if summary.is_file():
        data = json.loads(summary.read_text(encoding="utf-8"))
        boots = []
        for boot in data.get("boots", []):
            directory = Path(boot["dir"])
            if not directory.is_dir():  # a run directory copied elsewhere (CI artifacts)
                directory = path / directory.name
            boots.append((int(boot["number"]), directory))
        return boots
    match = _BOOT_DIR.match(path.name)
    if (path / UART_LOG).is_file() or (path / UART_TIMESTAMPS).is_file():
        return [(int(match[1]) if match else 1, path)]
    found = []
    for child in sorted(path.iterdir()):
        child_match = _BOOT_DIR.match(child.name)
        if child.is_dir() and child_match:
            found.append((int(child_match[1]), child))
    if not found:
        raise ConfigError(f"{path} is not a run directory (no run.json, no boot*/uart.log)")
    return sorted(found)


def replay(path: Path, contract: Contract, *, boot: int | None = None) -> list[ReplayedBoot]:
    """Run the matcher over each recorded boot of ``path``."""
    boots = boot_dirs(path)
    if boot is not None:
        if len(boots) == 1:
            boots = [(boot, boots[0][1])]  # a lone boot directory: the caller names its number
        else:
            boots = [(number, directory) for number, directory in boots if number == boot]
        if not boots:
            raise ConfigError(f"{path} has no boot {boot}")
    pins: dict[str, dict[str, str]] = {}
    replayed = []
    for number, directory in boots:
        matcher = BootMatcher(contract.for_boot(number), pinned=pins)
        timed = False
        for at, line in read_console(directory):
            timed = timed or at is not None
            matcher.feed_line(line, at)
        matcher.finish("the recorded console ends here")
        replayed.append(ReplayedBoot(number, directory, matcher, timed))
        if matcher.outcome is Outcome.PASSED:
            for marker_id, values in matcher.pins_for_next_boot().items():
                pins.setdefault(marker_id, {}).update(values)
    return replayed
