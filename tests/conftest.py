"""Top-level test configuration.

``pytester`` (used by tests/harness to test the pytest plugin) and the crash simulator's
summary (``support.crashsim.summary``, which must also run in an xdist controller) are enabled
here: pytest accepts ``pytest_plugins`` only in a top-level conftest. Options live here too,
so they parse whichever test directory pytest is pointed at.
"""

import pytest

pytest_plugins = ["pytester", "support.crashsim.summary"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("statefs-crash", "statefs crash simulator (tests/crash)")
    group.addoption(
        "--crash-depth",
        type=int,
        default=None,
        help="crash simulator depth: 1 = fast default; N = N seeds, more samples and tear "
        "offsets (also $STATEFS_CRASH_DEPTH)",
    )
