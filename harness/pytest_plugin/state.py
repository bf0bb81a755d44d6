"""Stash keys shared by the plugin's hooks and fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.pytest_plugin.options import QemuSettings

if TYPE_CHECKING:
    from harness.vm.machine import Machine

SETTINGS_KEY = pytest.StashKey[QemuSettings]()
#: The reports of an item's phases, so fixture teardown knows whether the test failed.
REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()
#: Every Machine a test's fixtures created, for the failure report.
MACHINES_KEY = pytest.StashKey[list["Machine"]]()
#: This session's artifact directory (one per xdist worker).
SESSION_DIR_KEY = pytest.StashKey[Path]()
