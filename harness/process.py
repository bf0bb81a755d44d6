"""Supervised child processes: QEMU and nbdkit get the same guarantees from one place.

A child the harness starts must never outlive it, whatever ends the harness:

* it runs in its own process group (``start_new_session``), so a signal reaches the child and
  its helpers only, never the harness or pytest;
* every running child is in one live set; an ``atexit`` hook SIGKILLs (and reaps) what is
  still there when the interpreter exits, and :func:`kill_all_live` does the same on demand;
* a caller can wrap its argv in ``setpriv --pdeathsig KILL`` (:func:`pdeathsig_prefix`): the
  kernel kills the child when the harness dies without running any Python (SIGKILL, an xdist
  worker crash). ``setpriv`` execs the child, so the PID held is the child's own. (Not
  ``preexec_fn``: it is unsafe in a process with threads, and console and QMP threads run.)

Also here: the bound on a private socket directory's path (AF_UNIX paths hold 107 bytes) and
reading the tail of a child's log, the evidence of a failure.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

#: A unix socket path holds at most 107 bytes; keep room for the socket's own name.
SOCKET_DIR_MAX = 90
#: Seconds the atexit hook waits to reap a SIGKILLed child (no zombie left behind).
REAP_TIMEOUT = 1.0


#: ``sq-<pid of the harness>-<what>-<random>``: the pid says whose directory it is.
_SOCKET_DIR = re.compile(r"^sq-(\d+)-")


def private_socket_dir(what: str) -> Path:
    """A fresh private directory for sockets, short enough for AF_UNIX paths (a long
    ``$TMPDIR`` falls back to /tmp), named after this process.

    A harness that is SIGKILLed cannot remove its directories; the next one that makes a
    directory removes those whose harness is gone (:func:`sweep_stale_socket_dirs`).
    """
    sweep_stale_socket_dirs()
    prefix = f"sq-{os.getpid()}-{what[:20]}-"
    path = tempfile.mkdtemp(prefix=prefix)
    if len(path.encode()) > SOCKET_DIR_MAX:
        os.rmdir(path)
        path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    return Path(path)


def sweep_stale_socket_dirs() -> list[Path]:
    """Remove this user's socket directories whose harness process no longer exists."""
    removed = []
    for parent in {Path(tempfile.gettempdir()), Path("/tmp")}:
        try:
            entries = list(parent.iterdir())
        except OSError:
            continue
        for entry in entries:
            match = _SOCKET_DIR.match(entry.name)
            if match is None or _pid_alive(int(match[1])):
                continue
            try:
                if entry.is_symlink() or entry.stat().st_uid != os.getuid():
                    continue
            except OSError:
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL --`` to put before an argv; empty when setpriv is missing
    (the caller decides what to fall back on)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def file_tail(path: Path, limit: int) -> str:
    """The last ``limit`` bytes of a log file as text ("" when it cannot be read)."""
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - limit))
        return handle.read().decode("utf-8", "replace")
    return ""


class Child:
    """One supervised child process: own process group, in the live set until released.

    Args:
        argv: the command (with any :func:`pdeathsig_prefix` already in front).
        output: where stdout and stderr go (an open binary file).
        env: the complete environment.
        on_emergency: called after :func:`kill_all_live` killed this child, so its owner can
            release what it holds (a socket directory, a log file).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        output: BinaryIO,
        env: Mapping[str, str],
        on_emergency: Callable[[], object] | None = None,
    ) -> None:
        self.argv = list(argv)
        self._on_emergency = on_emergency
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,  # own process group: signals reach the child only
            env=dict(env),
        )
        with _LIVE_LOCK:
            _LIVE.add(self)

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} returncode={self.popen.returncode}>"

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def poll(self) -> int | None:
        return self.popen.poll()

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> bool:
        """Send ``sig`` to the child's process group; False if the child is already gone."""
        if self.popen.poll() is not None:
            return False
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return False
        except PermissionError:  # group gone and PID reused in someone else's session
            self.popen.send_signal(sig)
        return True

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for the child to exit; True if it has."""
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def release(self) -> None:
        """Leave the live set (the owner has stopped the child, or will no longer need the
        atexit hook for it)."""
        with _LIVE_LOCK:
            _LIVE.discard(self)


# Children that may still be running, for the atexit hook.
_LIVE: weakref.WeakSet[Child] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def kill_all_live() -> list[int]:
    """SIGKILL every child this process started that still runs; returns their PIDs.

    Last resort for interpreter exit and signal handlers; normal paths stop their children
    themselves (QMP quit, SIGTERM, then SIGKILL).
    """
    with _LIVE_LOCK:
        children = list(_LIVE)
    pids = []
    for child in children:
        if child.signal(signal.SIGKILL):
            child.wait(REAP_TIMEOUT)  # reap it: no zombie left behind
            pids.append(child.pid)
        if child._on_emergency is not None:
            try:
                child._on_emergency()
            except Exception:
                log.exception("cleanup after killing pid %s failed", child.pid)
    return pids


atexit.register(kill_all_live)
