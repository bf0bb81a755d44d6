"""Fixtures for statefsd's host tests (the server thread lives in tests/support)."""

import pytest

from guest.statefs import FileBlockDevice

from support.statefsd_thread import ServerThread


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "state.img"
    FileBlockDevice.create(path, 8 << 20).close()
    return path


@pytest.fixture
def statefsd(disk, tmp_path):
    server = ServerThread(disk, tmp_path / "statefsd.sock")
    yield server
    server.stop()
