"""Fixtures for the guest's host tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.guest_flow import guest_run_dir


@pytest.fixture
def guest_run() -> Iterator[Path]:
    """A runtime directory the services' users can reach, with ``disk.img`` in it."""
    yield from guest_run_dir()
