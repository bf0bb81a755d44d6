"""A run's hold on its disk images, for the whole run rather than one QEMU process at a time.

QEMU locks a disk image only while it runs, so a second run on the same ``--disk`` could start
between boot 1 and boot 2 of the first and judge, or damage, a disk in the middle of a
sequence. The harness therefore takes its own exclusive ``flock`` on every local disk file for
the whole run. ``flock`` locks are independent of the OFD byte-range locks QEMU takes, so
QEMU's own locking works as before; a second harness run fails at once, before it starts QEMU,
naming who holds the disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from harness.diagnosis import disk_users
from harness.errors import DiskInUse
from harness.vm.config import DiskSpec


@contextlib.contextmanager
def hold_disks(disks: Iterable[DiskSpec], *, name: str = "run") -> Iterator[None]:
    """Hold an exclusive lock on each local disk file for the block; raise
    :class:`DiskInUse` at once if another run holds one."""
    with contextlib.ExitStack() as stack:
        for disk in disks:
            if disk.is_local_file and Path(disk.file).is_file():
                stack.enter_context(_hold(Path(disk.file), name))
        yield


@contextlib.contextmanager
def _hold(path: Path, name: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            users = [user.describe() for user in disk_users(path) if user.pid != os.getpid()] or [
                "another harness run"
            ]
            raise DiskInUse(
                f"{name}: disk image {path} is in use by {', '.join(users)}: another run holds "
                f"it for its whole boot sequence. Wait for it, or give this run its own copy",
                disk=str(path),
                users=users,
                argv=(),
                returncode=None,
                stderr="",
            ) from None
        yield
    finally:
        os.close(fd)
