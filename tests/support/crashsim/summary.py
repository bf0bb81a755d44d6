"""The crash simulator's end-of-run summary (a plugin: ``tests/conftest.py`` loads it).

Why a plugin and not ``tests/crash/conftest.py``: under pytest-xdist the controller collects
nothing, so a sub-directory's conftest hooks never run there; a plugin named in the top-level
conftest does. Figures travel from each test to the summary as report ``user_properties``,
whichever process ran the test.

The summary is one line, ``crash states: N judged, M after a first recovery, F failures``;
``-v`` adds a row per job and the mutants' verdicts.
"""

import pytest

FIGURES_PROPERTY = "crash_figures"
MUTANT_PROPERTY = "crash_mutant"

_figures: list[dict] = []
_mutants: list[dict] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name == FIGURES_PROPERTY:
            _figures.append(value)
        elif name == MUTANT_PROPERTY:
            _mutants.append(value)


def summary_line(rows: list[dict]) -> str:
    judged = sum(row["checked"] for row in rows)
    after = sum(row["after_recovery"] for row in rows)
    failures = sum(row["failures"] for row in rows)
    return (
        f"crash states: {judged:,} judged, {after:,} after a first recovery, {failures:,} failures"
    )


_KINDS = {"state": "crash states", "work": "the work", "damage": "media damage"}


def _level(level: int) -> str:
    return "with no earlier crash" if level == 0 else f"after {level} recoveries"


def _rows(write) -> None:
    if _figures:
        write(
            f"{'job':<40} {'segs':>4} {'windows':>7} {'states':>7} {'after':>7} {'proven':>7} "
            f"{'newer':>6} {'damage':>6} {'fail':>5} {'secs':>6} {'cpu':>6}"
        )
    for row in _figures:
        write(
            f"{row['workload']:<40} {row['segments']:>4} {row['windows']:>7} "
            f"{row['checked']:>7} {row['after_recovery']:>7} {row['proven']:>7} "
            f"{row['newer']:>6} {row['damage_checked']:>6} {row['failures']:>5} "
            f"{row['seconds']:>6.1f} {row.get('cpu_seconds', 0.0):>6.1f}"
        )
    for entry in _mutants:
        if entry["bug"]:
            where = ", ".join(
                f"{_KINDS[kind]} {_level(level)}"
                for kind, level in sorted(entry.get("caught_at", {}).items())
            )
            verdict = f"caught by {where}" if entry["failures"] else "NOT CAUGHT"
        else:
            verdict = "correct variant, not flagged" if not entry["failures"] else "FLAGGED"
        write(
            f"mutant {entry['mutant']}: {verdict} "
            f"({entry['failures']} failures, {entry['checked']} crash states checked)"
        )


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _figures and not _mutants:
        return
    if config.get_verbosity() > 0:
        terminalreporter.section("statefs crash simulator")
        _rows(terminalreporter.write_line)
    if _figures:
        terminalreporter.write_line(summary_line(_figures))
