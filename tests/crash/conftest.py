"""The crash simulator's knobs and its end-of-run summary.

Depth: ``--crash-depth=N`` (registered in tests/conftest.py, so it parses from anywhere) or
``STATEFS_CRASH_DEPTH=N`` (works for any invocation, ``make test``
included); the option wins. Depth 1 is the fast default. See docs/testing/crash-consistency.md.

Figures travel from each test to the summary as report ``user_properties``: the summary adds
up what the test reports carried, whichever process ran the tests.
"""

import os

import pytest

from harness.crashsim.states import Depth

from support.crashcheck import Figures
from support.crashloads import WORKLOADS

ENV_DEPTH = "STATEFS_CRASH_DEPTH"
FIGURES_PROPERTY = "crash_figures"
MUTANT_PROPERTY = "crash_mutant"

_figures: list[dict] = []
_mutants: list[dict] = []


def depth_level(config: pytest.Config) -> int:
    option = config.getoption("crash_depth", default=None)
    if option is not None:
        return int(option)
    return int(os.environ.get(ENV_DEPTH, "1") or "1")


@pytest.fixture(scope="session")
def crash_depth(pytestconfig: pytest.Config) -> Depth:
    return Depth.at(depth_level(pytestconfig))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "crash_case" in metafunc.fixturenames:
        depth = Depth.at(depth_level(metafunc.config))
        cases = [(workload, seed) for seed in range(depth.seeds) for workload in WORKLOADS]
        metafunc.parametrize(
            "crash_case", cases, ids=[f"{workload.name}-seed{seed}" for workload, seed in cases]
        )


@pytest.fixture
def record_crash_figures(request: pytest.FixtureRequest):
    """Attach a run's figures to the test report, for the summary."""

    def record(figures: Figures) -> None:
        request.node.user_properties.append((FIGURES_PROPERTY, figures.as_dict()))

    return record


@pytest.fixture
def record_crash_mutant(request: pytest.FixtureRequest):
    """Attach a mutant's verdict to the test report, for the summary."""

    def record(name: str, bug: bool, failures: int, checked: int) -> None:
        entry = {"mutant": name, "bug": bug, "failures": failures, "checked": checked}
        request.node.user_properties.append((MUTANT_PROPERTY, entry))

    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name == FIGURES_PROPERTY:
            _figures.append(value)
        elif name == MUTANT_PROPERTY:
            _mutants.append(value)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _figures and not _mutants:
        return
    write = terminalreporter.write_line
    terminalreporter.section("statefs crash simulator")
    if _figures:
        write(
            f"depth {depth_level(config)}: {'workload':<28} {'segs':>4} {'windows':>7} "
            f"{'writes':>6} {'states':>7} {'newer':>5} {'older':>6} {'damage':>6} "
            f"{'fail':>4} {'secs':>6}"
        )
        total = dict.fromkeys(("windows", "writes", "checked", "newer", "older"), 0)
        total.update(damage_checked=0, failures=0, seconds=0.0, generated=0)
        for row in _figures:
            write(
                f"{'':9}{row['workload']:<28} {row['segments']:>4} {row['windows']:>7} "
                f"{row['writes']:>6} {row['checked']:>7} {row['newer']:>5} {row['older']:>6} "
                f"{row['damage_checked']:>6} {row['failures']:>4} {row['seconds']:>6.1f}"
            )
            for key in total:
                total[key] += row[key]
        write(
            f"{len(_figures)} workload runs, {total['checked']} distinct crash states checked "
            f"({total['generated']} generated), {total['damage_checked']} damaged images "
            f"refused, {total['failures']} failures, {total['seconds']:.1f} s"
        )
    for entry in _mutants:
        if entry["bug"]:
            verdict = "caught" if entry["failures"] else "NOT CAUGHT"
        else:
            verdict = "correct variant, not flagged" if not entry["failures"] else "FLAGGED"
        write(
            f"mutant {entry['mutant']}: {verdict} "
            f"({entry['failures']} failing states of {entry['checked']} checked)"
        )
