"""Fixtures for the store tests (helpers live in tests/support/stores.py)."""

import pytest

from guest.statefs import Store

from support.stores import new_store


@pytest.fixture
def store() -> Store:
    return new_store()
