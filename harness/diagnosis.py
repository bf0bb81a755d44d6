"""Turn what QEMU and the guest left behind into a cause a user can act on.

Two kinds of evidence are read here, never to decide a verdict, only to explain one:

* **QEMU's stderr** when it failed to start. QEMU's image locking (``-drive`` takes OFD locks
  on the file) makes a second QEMU on a disk another process uses fail with::

      qemu-system-aarch64: -device virtio-blk-device,drive=d0: Failed to get "write" lock
      Is another process using the image [/path/disk.img]?

  :func:`lock_conflict` recognises it; :func:`disk_users` finds who holds the file open (by
  scanning ``/proc/<pid>/fd``: OFD locks show pid -1 in ``/proc/locks``), so the error can
  name the other VM.
* **A boot's console** when the boot did not pass: :func:`boot_hints` adds one-line hints to
  the report. statefsd's refusal of a disk that is neither blank nor a statefs volume
  (``statefsd: fatal EMEDIUMTYPE``) is named as the reason, with the way out. The guest's
  PID 1 prints ``init: started`` as its first line (about 2 s after launch under TCG; a
  healthy kernel booted with ``quiet`` prints nothing before it), so a
  boot that ended, panicked or ran for :data:`NO_INIT_HINT_AFTER` seconds without it points
  at a broken kernel or initramfs. A console silent for :data:`SILENCE_HINT_AFTER` seconds
  when the deadline passed points at a hung guest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DiskInUse

#: The first line the guest's PID 1 prints (``guest/init/pid1.py``; the contract's
#: ``init-started`` marker).
GUEST_INIT_LINE = "init: started"
#: Seconds (scaled by the timeout multiplier) after which a boot still without
#: GUEST_INIT_LINE is reported as a likely broken image.
NO_INIT_HINT_AFTER = 20.0
#: Seconds of console silence before a timed-out guest is reported as hung.
SILENCE_HINT_AFTER = 5.0
#: How to rebuild the image, quoted in every hint about it.
REBUILD_IMAGE = "`make image` (or `python -m harness image --force`)"
#: What statefsd prints when it refuses a disk that is neither blank nor a statefs volume.
DISK_REFUSED_LINE = "statefsd: fatal EMEDIUMTYPE"
#: The kernel argument that makes it format such a disk anyway.
FORMAT_FORCE_ARG = "sq.format=force"
#: What to tell the user about it (the CLI's flag and the kernel argument).
DISK_REFUSED_HINT = (
    "statefsd refused the disk: it is neither blank nor a statefs volume, and it was not "
    "formatted over (nothing on it was changed). Use a fresh disk (leave out --disk), or format "
    f"this one anyway with --format-disk (kernel argument {FORMAT_FORCE_ARG}), which destroys "
    "what is on it"
)

_LOCK_FAILURE = re.compile(
    r'Failed to get (?:shared )?"(?P<lock>[^"]+)" lock\s*'
    r"Is another process using the image \[(?P<path>[^\]\n]+)\]\?"
)
_COMMAND_CHARS = 80


@dataclass(frozen=True)
class LockConflict:
    """QEMU could not lock ``path``: another process has it open with a conflicting lock."""

    path: str
    lock: str  # "write", "consistent read", ...


@dataclass(frozen=True)
class DiskUser:
    """A process that has a disk image open."""

    pid: int
    command: str

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command})"


def lock_conflict(stderr: str) -> LockConflict | None:
    """The image-locking failure QEMU reported on ``stderr``, if that is why it failed."""
    match = _LOCK_FAILURE.search(stderr)
    if match is None:
        return None
    return LockConflict(match["path"], match["lock"])


def disk_users(path: str | os.PathLike[str], *, proc: Path = Path("/proc")) -> list[DiskUser]:
    """Processes that have ``path`` open, found through ``/proc/<pid>/fd``.

    Only processes we may inspect are seen (our own user's, or all as root); the list is
    empty when the file is gone or held by someone else (another user, another host on a
    shared filesystem).
    """
    try:
        target = os.stat(path)
    except OSError:
        return []
    users = []
    for entry in sorted(proc.iterdir(), key=lambda p: (len(p.name), p.name)):
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone, or not ours to inspect
            continue
        for fd in fds:
            try:
                info = fd.stat()  # follows the magic link to the open file
            except OSError:
                continue
            if (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino):
                users.append(DiskUser(int(entry.name), _command(entry)))
                break
    return users


def disk_in_use_error(
    name: str, argv: Sequence[str], returncode: int | None, stderr: str
) -> DiskInUse | None:
    """QEMU's image-locking failure as :class:`DiskInUse` naming the holder; None when the
    failure is something else."""
    conflict = lock_conflict(stderr)
    if conflict is None:
        return None
    users = [user.describe() for user in disk_users(conflict.path)]
    holder = (
        ", ".join(users)
        if users
        else "another process (none of this user's processes has it open: another "
        "user's, or another host's on a shared filesystem)"
    )
    return DiskInUse(
        f"{name}: disk image {conflict.path} is in use by {holder}: QEMU could not "
        f'get its "{conflict.lock}" lock. Stop that VM first, or give this one its own '
        f"copy of the disk",
        disk=conflict.path,
        users=users,
        argv=argv,
        returncode=returncode,
        stderr=stderr,
    )


def _command(proc_entry: Path) -> str:
    """A short command line: the program's name and, for QEMU, its ``-name``."""
    try:
        raw = (proc_entry / "cmdline").read_bytes()
    except OSError:
        return "?"
    argv = [arg.decode("utf-8", "replace") for arg in raw.split(b"\0") if arg]
    if not argv:
        return "?"
    words = [os.path.basename(argv[0])]
    if "-name" in argv[:-1]:
        words += ["-name", argv[argv.index("-name") + 1]]
    else:
        words += argv[1:]
    text = " ".join(words)
    return text if len(text) <= _COMMAND_CHARS else text[: _COMMAND_CHARS - 3] + "..."


def boot_hints(
    lines: Sequence[tuple[float | None, str]],
    *,
    now: float,
    qemu_exited: bool,
    failed: bool,
    timed_out: bool,
    multiplier: float = 1.0,
) -> list[str]:
    """Hints for a boot that did not pass (see the module docstring).

    ``lines``: the console as ``(seconds since launch, line)``; ``now``: seconds since
    launch; ``qemu_exited``: QEMU ended by itself; ``failed``: a failure line or event was
    seen; ``timed_out``: the boot ended at a deadline.
    """
    hints = []
    if any(DISK_REFUSED_LINE in line for _, line in lines):
        hints.append(DISK_REFUSED_HINT)
    started = any(GUEST_INIT_LINE in line for _, line in lines)
    if not started and (qemu_exited or failed or now >= NO_INIT_HINT_AFTER * multiplier):
        count = len(lines)
        seen = "printed nothing" if not count else f"printed {count} line{'s' * (count != 1)}"
        hints.append(
            f"the guest never printed {GUEST_INIT_LINE!r} (the console {seen} in {now:.1f} s): "
            f"the kernel or initramfs is likely broken; rebuild the image with {REBUILD_IMAGE}"
        )
    elif started and timed_out and not qemu_exited:
        last_at = next((at for at, _ in reversed(lines) if at is not None), None)
        if last_at is not None and now - last_at >= SILENCE_HINT_AFTER:
            hints.append(
                f"the console was silent for the last {now - last_at:.1f} s (last line at "
                f"{last_at:.2f} s): the guest looks hung, not slow"
            )
    return hints
