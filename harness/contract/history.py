"""The ``markers`` view: replay a past run's console through the contract.

A run directory keeps each boot's ``uart.timestamps`` (lines with seconds since launch), so the
matcher can be run again offline: which marker came when, what was missing, which line failed.
Boots are replayed in order and pass their captured values forward, exactly like the live run,
so the cross-boot checks are replayed too. Nothing here greps for truth: it is the same
matcher fed from a file, cut into lines by the same rule (:mod:`harness.lines`).

What the console alone cannot show comes from ``run.json``: a boot that ended by its deadline
(TIMEOUT), by an interruption, or by something outside the console (a QMP panic event, a
guest that did not power off) replays as that recorded verdict, not as "the console ends here".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.artifacts import RUN_SUMMARY, UART_LOG, UART_TIMESTAMPS
from harness.contract.matcher import BootMatcher, Outcome
from harness.contract.spec import Contract
from harness.errors import ConfigError
from harness.lines import split_lines

_STAMPED = re.compile(r"^\s*(\d+(?:\.\d+)?) (.*)$", re.DOTALL)
_BOOT_DIR = re.compile(r"^boot(\d+)(?:-\d+)?$")


@dataclass
class ReplayedBoot:
    number: int
    directory: Path
    matcher: BootMatcher
    timed: bool


@dataclass(frozen=True)
class RecordedBoot:
    """One boot of a past run: its number, its console, and what ``run.json`` says of it."""

    number: int
    directory: Path
    console: Path | None = None  # a console file given directly (any name)
    summary: Mapping[str, Any] = field(default_factory=dict)


def _stamped_lines(text: str) -> Iterator[tuple[float | None, str]]:
    for raw in split_lines(text):
        match = _STAMPED.match(raw)
        if match:
            yield float(match[1]), match[2]
        else:
            yield None, raw


def read_console_file(path: Path) -> Iterator[tuple[float | None, str]]:
    """``(seconds or None, line)`` from one console file: ``<seconds> <line>`` records if every
    line is one (a ``uart.timestamps``), raw lines without times otherwise (a ``uart.log``)."""
    text = path.read_bytes().decode("utf-8", "replace")
    lines = split_lines(text)
    if path.name == UART_TIMESTAMPS or (lines and all(_STAMPED.match(line) for line in lines)):
        yield from _stamped_lines(text)
        return
    for line in lines:
        yield None, line


def read_console(directory: Path) -> Iterator[tuple[float | None, str]]:
    """``(seconds or None, line)`` from ``uart.timestamps``, or from ``uart.log`` without times."""
    stamps = directory / UART_TIMESTAMPS
    if stamps.is_file():
        # Bytes, not read_text(): universal newlines would turn a lone "\r" into a line end.
        yield from _stamped_lines(stamps.read_bytes().decode("utf-8", "replace"))
        return
    log_path = directory / UART_LOG
    if not log_path.is_file():
        raise ConfigError(f"{directory} has neither {UART_TIMESTAMPS} nor {UART_LOG}")
    for raw in split_lines(log_path.read_bytes().decode("utf-8", "replace")):
        yield None, raw


def is_one_boot(path: Path) -> bool:
    """A console file of any name, or a boot directory (its own uart.log), not a run."""
    return path.is_file() or (path / UART_LOG).is_file() or (path / UART_TIMESTAMPS).is_file()


def recorded_boots(path: Path) -> list[RecordedBoot]:
    """The boots of a run directory in order, from run.json or the ``bootN`` names; a boot
    directory gives that one boot, and a console file (any name) that one console."""
    if path.is_file():
        if path.name in (UART_LOG, UART_TIMESTAMPS):
            path = path.parent
        else:
            match = _BOOT_DIR.match(path.parent.name)
            return [RecordedBoot(int(match[1]) if match else 1, path.parent, console=path)]
    summary = path / RUN_SUMMARY
    if summary.is_file():
        data = json.loads(summary.read_text(encoding="utf-8"))
        boots = []
        for boot in data.get("boots", []):
            directory = Path(boot["dir"])
            if not directory.is_dir():  # a run directory copied elsewhere (CI artifacts)
                directory = path / directory.name
            boots.append(RecordedBoot(int(boot["number"]), directory, summary=boot))
        if boots:
            return boots
    match = _BOOT_DIR.match(path.name)
    if is_one_boot(path):
        return [RecordedBoot(int(match[1]) if match else 1, path)]
    found = []
    for child in sorted(path.iterdir()):
        child_match = _BOOT_DIR.match(child.name)
        if child.is_dir() and child_match:
            found.append(RecordedBoot(int(child_match[1]), child))
    if not found:
        raise ConfigError(f"{path} is not a run directory (no run.json, no boot*/uart.log)")
    return sorted(found, key=lambda boot: boot.number)


_RECORDED_ONLY = {Outcome.TIMEOUT.value, Outcome.FAILED.value, Outcome.INCOMPLETE.value}


def _adopt_recorded(matcher: BootMatcher, summary: Mapping[str, Any]) -> None:
    """Replace "the console ends here" by the verdict run.json recorded for what the console
    cannot show (a deadline, an interruption, a QMP event, QEMU's exit)."""
    outcome, reason = summary.get("outcome"), summary.get("reason") or ""
    if outcome not in _RECORDED_ONLY or matcher.outcome is Outcome.FAILED:
        return
    if matcher.outcome is Outcome.PASSED and (
        outcome != Outcome.FAILED.value or summary.get("failure") is not None
    ):
        return  # re-judged by the console (perhaps under another contract): that stands
    matcher.outcome = Outcome(outcome)
    matcher.reason = f"{reason} (recorded in {RUN_SUMMARY})" if reason else RUN_SUMMARY


def replay(path: Path, contract: Contract, *, boot: int | None = None) -> list[ReplayedBoot]:
    """Run the matcher over each recorded boot of ``path``."""
    boots = recorded_boots(path)
    if boot is not None:
        if len(boots) == 1:  # a lone boot directory or file: the caller names its number
            boots = [RecordedBoot(boot, boots[0].directory, boots[0].console, boots[0].summary)]
        else:
            boots = [recorded for recorded in boots if recorded.number == boot]
        if not boots:
            raise ConfigError(f"{path} has no boot {boot}")
    pins: dict[str, dict[str, str]] = {}
    replayed = []
    for recorded in boots:
        matcher = BootMatcher(contract.for_boot(recorded.number), pinned=pins)
        timed = False
        lines = (
            read_console_file(recorded.console)
            if recorded.console is not None
            else read_console(recorded.directory)
        )
        for at, line in lines:
            timed = timed or at is not None
            matcher.feed_line(line, at)
        matcher.finish("the recorded console ends here")
        _adopt_recorded(matcher, recorded.summary)
        replayed.append(ReplayedBoot(recorded.number, recorded.directory, matcher, timed))
        if matcher.outcome is Outcome.PASSED:
            for marker_id, values in matcher.pins_for_next_boot().items():
                pins.setdefault(marker_id, {}).update(values)
    return replayed
