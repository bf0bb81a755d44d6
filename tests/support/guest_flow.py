"""The guest's contract flow on the host, as init runs it: runtime directories prepared as
root, each service forked by the same supervisor and dropped to its own identity, the same
selftest; over a file-backed disk.

The services really change uid, so the test process must be root (``needs_root``), and the
runtime directory must be one the services' users can reach: a fresh ``/tmp`` directory of
mode 0755, not pytest's ``tmp_path`` (under a 0700 directory).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from guest.init import runtime
from guest.init.contract import Services
from guest.init.supervisor import Supervisor
from guest.selftest.checks import Selftest
from guest.statefs import FileBlockDevice

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="services drop to their own uids")


def warm_imports() -> None:
    """Import now what the services import lazily: after they drop root they may be unable to
    read this host's standard library (a Python installed under root's home directory)."""
    import encodings.ascii
    import encodings.latin_1  # noqa: F401 - loaded for the children

    from guest.keystored.keys import preload

    preload()


def guest_run_dir() -> Iterator[Path]:
    """A fresh runtime directory (mode 0755) holding a 16 MiB disk image, ``disk.img``; for a
    fixture (``tests/guest/conftest.py``), removed after it."""
    warm_imports()
    base = Path(tempfile.mkdtemp(prefix="statefs-guest-"))
    base.chmod(0o755)
    FileBlockDevice.create(base / "disk.img", 16 << 20).close()
    yield base
    shutil.rmtree(base, ignore_errors=True)


def contract_boot(
    run_dir: Path,
    boot: int,
    nonce: str,
    *,
    before_restart: Callable[[], None] = lambda: None,
) -> bool:
    """One boot of the guest's contract flow: prepare, services, selftest, stop."""
    disk = str(run_dir / "disk.img")
    sockets = runtime.prepare(disk, str(run_dir))
    supervisor = Supervisor()
    services = Services(supervisor, disk, sockets)
    try:
        services.start_all()

        def restart() -> None:
            before_restart()
            services.restart()

        passed = Selftest(boot=boot, nonce=nonce, restart=restart, sockets=sockets).run()
        supervisor.check()
    finally:
        supervisor.stop_all()
    return passed
