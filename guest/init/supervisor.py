"""Service supervision for PID 1: start, wait until ready, stop, and notice deaths.

Services are forked from init rather than exec'd: the interpreter and the guest modules are
already loaded, so a service starts in milliseconds instead of the second a fresh CPython takes
under TCG emulation. Each service is still its own process with its own state: stopping and
starting it is a real restart (fresh store, fresh file descriptors, fresh replay).

A service given an identity drops to it in the child, before its main runs: whatever the
service does, it does with its own uid, gid and groups (``guest.identities``); what needs root
(the device's owner, the runtime directories) init has done before (``guest.init.runtime``).

Readiness is a byte on a pipe, written by the service once it answers requests (the same idea
as systemd's sd_notify). A service that exits before it is ready, or does not become ready in
time, is an error that names it and its exit status.
"""

import os
import select
import signal
import time
from collections.abc import Callable

from guest.console import emit, emit_traceback
from guest.identities import Identity, become

#: A service's main: called in the child with a "notify ready" callback; returns an exit code.
ServiceMain = Callable[[Callable[[], None]], int]


class ServiceError(Exception):
    """A service failed to start, died, or did not stop; the message names it."""


class Supervisor:
    """Children of init, by name."""

    def __init__(self) -> None:
        self._pids: dict[str, int] = {}

    @property
    def running(self) -> list[str]:
        return list(self._pids)

    def start(
        self,
        name: str,
        main: ServiceMain,
        *,
        identity: Identity | None = None,
        ready_timeout: float = 30.0,
    ) -> int:
        """Fork ``main`` as service ``name`` (as ``identity``, if given) and wait until it
        reports ready; returns its pid."""
        if name in self._pids:
            raise ServiceError(f"{name} is already running (pid {self._pids[name]})")
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the service
            os.close(ready_r)
            code = 70
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                if identity is not None:
                    become(identity)
                code = main(lambda: _signal_ready(ready_w))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException as exc:  # noqa: BLE001 - report anything, then exit the child
                emit(f"{name}: fatal {type(exc).__name__}: {exc}")
                emit_traceback()
            finally:
                os._exit(code)
        os.close(ready_w)
        try:
            readable, _, _ = select.select([ready_r], [], [], ready_timeout)
            signal_byte = os.read(ready_r, 1) if readable else b""
        finally:
            os.close(ready_r)
        self._pids[name] = pid
        if signal_byte == b"R":
            return pid
        if readable:  # EOF: the service exited before it was ready
            status = self._reap(name, timeout=5.0)
            raise ServiceError(f"{name} exited before it was ready ({describe(status)})")
        self.stop(name, timeout=2.0)
        raise ServiceError(f"{name} was not ready within {ready_timeout:.0f} s")

    def stop(self, name: str, *, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; returns the wait status code."""
        pid = self._pids.get(name)
        if pid is None:
            return None
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        code = self._reap(name, timeout=timeout)
        if code is None:
            os.kill(pid, signal.SIGKILL)
            code = self._reap(name, timeout=5.0)
            raise ServiceError(f"{name} did not stop within {timeout:.0f} s and was killed")
        return code

    def check(self) -> None:
        """Raise ServiceError if a service has exited on its own."""
        for name, pid in list(self._pids.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                del self._pids[name]
                raise ServiceError(
                    f"{name} exited unexpectedly ({describe(os.waitstatus_to_exitcode(status))})"
                )

    def stop_all(self) -> None:
        """Stop every service, the most recently started first; report, never raise."""
        for name in reversed(list(self._pids)):
            try:
                code = self.stop(name)
            except ServiceError as exc:
                emit(f"init: {exc}")
                continue
            if code:
                emit(f"init: {name} stopped with {describe(code)}")

    def _reap(self, name: str, *, timeout: float) -> int | None:
        pid = self._pids[name]
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                del self._pids[name]
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.005)


def _signal_ready(fd: int) -> None:
    """The service's ``on_ready``: one byte on the pipe the supervisor waits on."""
    os.write(fd, b"R")


def describe(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"
