"""One nbdkit process serving the VM's disk through the cache plugin, never left behind.

::

    IDLE --start()--> RUNNING --freeze()--> FROZEN --kill()--> STOPPED
                         |                                        ^
                         +--------------stop() / kill()-----------+

The server gets the same guarantees as a :class:`~harness.vm.machine.Machine`'s QEMU, from the
same module (:mod:`harness.process`):

* its own process group, so signals reach nbdkit and its threads only;
* ``setpriv --pdeathsig KILL`` (nbdkit's ``--exit-with-parent`` when setpriv is missing): the
  kernel kills it if the harness dies without running any Python;
* the ``atexit`` hook SIGKILLs servers still running at interpreter exit (then cleans up as
  :meth:`kill` does), and ``with`` blocks kill it on any exception;
* every stop path ends in :meth:`_post_stop`, which reaps the process and removes the socket
  file nbdkit leaves behind (a stale one would make the next start fail or connect nowhere).

The power cut uses :meth:`freeze` (SIGSTOP: from that instant the disk answers nothing and
writes nothing) before QEMU is killed, then :meth:`kill`.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from harness.errors import DependencyMissing
from harness.powercut.cache import require_resolved
from harness.powercut.errors import DiskServerError
from harness.process import Child, file_tail, pdeathsig_prefix, private_socket_dir
from harness.vm.config import DiskSpec

log = logging.getLogger(__name__)

PLUGIN = Path(__file__).with_name("plugin.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
SOCKET_NAME = "nbd.sock"
PIDFILE_NAME = "nbdkit.pid"

DEFAULT_START_TIMEOUT = 10.0
STOP_TIMEOUT = 3.0
KILL_TIMEOUT = 10.0
LOG_EVIDENCE_BYTES = 8192
_POLL = 0.01


class ServerState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    FROZEN = "frozen"
    STOPPED = "stopped"


def nbdkit_binary() -> str:
    path = shutil.which("nbdkit")
    if path is None:
        raise DependencyMissing(
            "nbdkit not found: install it with `apt-get install nbdkit nbdkit-plugin-python` "
            "(./scripts/setup-host.sh does this)"
        )
    return path


class DiskServer:
    """nbdkit + the cache plugin on a private unix socket (see the module docstring).

    Args:
        backing: the raw disk image served to the VM.
        state_dir: the cache's journal and undo record (created if missing; must be resolved).
        log_path: nbdkit's stdout and stderr, appended.
        verbose: nbdkit ``-v`` (every request in the log: large).
        start_timeout: seconds nbdkit has to write its pidfile (it does so once listening).
    """

    def __init__(
        self,
        backing: Path,
        state_dir: Path,
        *,
        log_path: Path,
        verbose: bool = False,
        start_timeout: float = DEFAULT_START_TIMEOUT,
    ) -> None:
        self.backing = Path(backing)
        self.state_dir = Path(state_dir)
        self.log_path = Path(log_path)
        self.verbose = verbose
        self.start_timeout = start_timeout
        self.argv: list[str] = []
        self._state = ServerState.IDLE
        self._dir: Path | None = None
        self._process: Child | None = None
        self._log: BinaryIO | None = None

    def __repr__(self) -> str:
        return f"<DiskServer {self._state.name} pid={self.pid} {self.backing.name}>"

    @property
    def state(self) -> ServerState:
        return self._state

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    @property
    def socket_path(self) -> Path:
        if self._dir is None:
            raise DiskServerError(f"{self!r}: no socket before start()")
        return self._dir / SOCKET_NAME

    def disk_spec(self, **kwargs: Any) -> DiskSpec:
        """The VM's ``-drive``: raw over NBD, ``cache=writeback`` so guest flushes reach us."""
        return DiskSpec.nbd_unix(self.socket_path, format="raw", cache="writeback", **kwargs)

    def _set_state(self, state: ServerState) -> None:
        log.debug("nbdkit %s -> %s", self._state.name, state.name)
        self._state = state

    # -- start ------------------------------------------------------------------------------
    def start(self) -> DiskServer:
        """Start nbdkit and wait until it listens; raise :class:`DiskServerError` with its log.

        Refuses (:class:`~harness.powercut.errors.UnresolvedCache`) while the state directory
        holds an unresolved cut.
        """
        if self._state is not ServerState.IDLE:
            raise DiskServerError(f"{self!r}: start() needs IDLE")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        require_resolved(self.state_dir)
        binary = nbdkit_binary()
        self._dir = private_socket_dir("nbd")
        pidfile = self._dir / PIDFILE_NAME
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        argv = [binary, "--foreground", "--unix", str(self.socket_path), "--pidfile", str(pidfile)]
        prefix = pdeathsig_prefix()
        if not prefix:
            argv.append("--exit-with-parent")
        if self.verbose:
            argv.append("--verbose")
        argv += ["python", str(PLUGIN), f"backing={self.backing}", f"state={self.state_dir}"]
        self.argv = argv
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in _post_stop)
        try:
            self._process = Child(
                [*prefix, *argv], output=self._log, env=env, on_emergency=self._post_stop
            )
            self._set_state(ServerState.RUNNING)
            self._wait_ready(pidfile)
        except BaseException:
            self.kill()
            raise
        log.info("nbdkit pid %s serving %s on %s", self.pid, self.backing, self.socket_path)
        return self

    def _wait_ready(self, pidfile: Path) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise self._error(f"nbdkit exited with code {code} before listening")
            with contextlib.suppress(FileNotFoundError):
                if pidfile.read_text().strip():
                    return
            if time.monotonic() > deadline:
                raise self._error(f"nbdkit did not listen within {self.start_timeout:g} s")
            time.sleep(_POLL)

    def _error(self, message: str) -> DiskServerError:
        lines = [f"command: {' '.join(self.argv)}", f"log: {self.log_path}"]
        tail = self.log_tail().rstrip()
        lines += ["log tail:", *(f"  {line}" for line in tail.splitlines()[-30:])] if tail else []
        return DiskServerError(message, evidence="\n".join(lines))

    def log_tail(self, limit: int = LOG_EVIDENCE_BYTES) -> str:
        return file_tail(self.log_path, limit)

    # -- stopping ---------------------------------------------------------------------------
    def _signal(self, sig: signal.Signals) -> bool:
        return self._process is not None and self._process.signal(sig)

    def freeze(self) -> None:
        """SIGSTOP: the disk stops answering and writing at this instant (the cut's step 1)."""
        if self._state is not ServerState.RUNNING:
            raise DiskServerError(f"{self!r}: freeze() needs RUNNING")
        if not self._signal(signal.SIGSTOP):
            raise self._error("nbdkit was already gone when the power was cut")
        self._set_state(ServerState.FROZEN)

    def kill(self) -> None:
        """SIGKILL (works on a frozen process too), reap, clean up. Idempotent."""
        if self._state in (ServerState.IDLE, ServerState.STOPPED) and self._process is None:
            self._post_stop()
            return
        self._signal(signal.SIGKILL)
        self._wait(KILL_TIMEOUT)
        self._post_stop()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop a server that may still be needed cleanly (SIGTERM, then SIGKILL). Idempotent.

        The cache is not flushed by this: whatever is pending stays for :func:`resolve`.
        """
        if self._state is ServerState.FROZEN:
            self._signal(signal.SIGCONT)
        if self._signal(signal.SIGTERM) and not self._wait(timeout):
            log.warning("nbdkit ignored SIGTERM for %.1f s: SIGKILL", timeout)
        self.kill()

    def _wait(self, timeout: float) -> bool:
        return self._process is None or self._process.wait(timeout)

    def _post_stop(self) -> None:
        """The one cleanup path: process reaped, socket file and private dir removed."""
        if self._process is not None:
            self._process.release()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        if self._process is not None and self._process.returncode is None:
            raise DiskServerError(f"nbdkit pid {self._process.pid} survived SIGKILL")
        self._set_state(ServerState.STOPPED)

    # -- context manager --------------------------------------------------------------------
    def __enter__(self) -> DiskServer:
        if self._state is ServerState.IDLE:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.stop()
        else:
            self.kill()
