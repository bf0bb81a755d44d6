"""Markers for the image tests (the repo runs pytest with --strict-markers)."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "qemu: boots a QEMU guest (slow; needs qemu-system-aarch64)")
    config.addinivalue_line(
        "markers",
        "network: may fetch Debian packages through apt when the image cache is cold",
    )
