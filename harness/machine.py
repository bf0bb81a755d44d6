"""One QEMU process with a strict lifecycle: launch, use, and always clean up.

::

    IDLE --launch()--> LAUNCHING --ok--> RUNNING --shutdown()/wait()/power_cut()--> STOPPING
                           |                                                           |
                           +--error: cleanup, then LaunchError--> STOPPED <-------------+

A Machine is used once: a reboot on the same disk is a new QEMU process (``-no-reboot`` makes
every guest reboot or power-off end the process), made by :meth:`Machine.next_boot`.

Whatever happens, the QEMU process is gone when control leaves the machine:

* ``__exit__`` (exception, test failure, Ctrl-C) and :meth:`shutdown` escalate: QMP ``quit``,
  then SIGTERM, then SIGKILL, each with a timeout, to QEMU's own process group;
* :meth:`_post_shutdown` is the single cleanup path; it also runs after a failed launch, starts
  by making sure the process is dead, and frees everything :meth:`_pre_launch` opened
  (sockets, the private temp dir, files, the console and QMP threads);
* an ``atexit`` hook SIGKILLs machines still running when the interpreter exits;
* QEMU runs under ``setpriv --pdeathsig KILL``: the kernel kills it when the harness process
  dies without running any Python (SIGKILL, an xdist worker crash). ``setpriv`` execs QEMU, so
  the PID we hold is QEMU's. (Not ``preexec_fn``: it is unsafe in a process with threads, and
  the console and QMP threads of other VMs are running.)
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import functools
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Concatenate, ParamSpec, TypeVar

from harness.accel import AccelChoice, choose_accel
from harness.artifacts import VmArtifacts, default_runs_dir, new_run_id
from harness.config import ARCH_DEFAULTS, MachineConfig
from harness.console import Console, ConsoleLog
from harness.deadline import Deadline
from harness.diagnosis import REBUILD_IMAGE, disk_users, lock_conflict
from harness.errors import (
    ConfigError,
    DependencyMissing,
    DiskInUse,
    HarnessError,
    LaunchError,
    MachineStateError,
    QmpError,
    ShutdownError,
    Terminated,
)
from harness.qemu_args import Endpoints, build_argv, display_argv
from harness.qmp import QmpSession

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_LAUNCH_TIMEOUT = 15.0
QUIT_TIMEOUT = 3.0
TERM_TIMEOUT = 3.0
KILL_TIMEOUT = 10.0
STDERR_EVIDENCE_BYTES = 16384
LAUNCH_EXIT_GRACE = 0.5


class MachineState(enum.Enum):
    IDLE = "idle"
    LAUNCHING = "launching"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


def requires(
    *states: MachineState,
) -> Callable[[Callable[Concatenate[Machine, P], R]], Callable[Concatenate[Machine, P], R]]:
    """Guard a method: raise :class:`MachineStateError` unless the machine is in ``states``."""

    def decorate(
        method: Callable[Concatenate[Machine, P], R],
    ) -> Callable[Concatenate[Machine, P], R]:
        @functools.wraps(method)
        def guarded(self: Machine, *args: P.args, **kwargs: P.kwargs) -> R:
            if self.state not in states:
                raise MachineStateError(method.__name__, self.state, states)
            return method(self, *args, **kwargs)

        return guarded

    return decorate


@dataclass(frozen=True)
class ExitInfo:
    """How a QEMU process ended.

    ``how``: ``exited`` (QEMU ended by itself: a guest power-off, or a reboot or panic under
    ``-no-reboot``), ``quit`` (QMP), ``sigterm``, ``sigkill`` (escalation), ``power-cut``
    (:meth:`Machine.power_cut`) or ``launch-failed``. ``reason`` is the QMP ``SHUTDOWN``
    event's reason when there was one (``guest-shutdown``, ``guest-reset``, ``host-qmp-quit``...).
    """

    returncode: int | None
    how: str
    at: float
    reason: str | None = None

    @property
    def guest_powered_off(self) -> bool:
        return self.how == "exited" and self.returncode == 0 and self.reason == "guest-shutdown"

    _PHRASES = {
        "exited": "QEMU exited by itself",
        "quit": "QEMU stopped by QMP quit",
        "sigterm": "QEMU stopped by SIGTERM",
        "sigkill": "QEMU killed (SIGKILL)",
        "power-cut": "power cut (QEMU SIGKILLed)",
        "launch-failed": "QEMU failed to launch",
    }

    def describe(self) -> str:
        what = self._PHRASES.get(self.how, f"QEMU ended ({self.how})")
        detail = f", shutdown reason {self.reason}" if self.reason else ""
        return f"{what} at {self.at:.2f} s, exit code {self.returncode}{detail}"


# Machines whose QEMU may still be running, for the atexit hook.
_LIVE: weakref.WeakSet[Machine] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def kill_all_live() -> list[int]:
    """SIGKILL every QEMU this process started that still runs; returns their PIDs.

    Last resort for interpreter exit and signal handlers; normal paths use shutdown().
    """
    with _LIVE_LOCK:
        machines = list(_LIVE)
    pids = []
    for machine in machines:
        pid = machine.pid
        if pid is not None and machine._kill_group(signal.SIGKILL):
            machine._wait_process(1.0)  # reap it: no zombie left behind
            pids.append(pid)
    return pids


atexit.register(kill_all_live)


#: A unix socket path holds at most 107 bytes; keep room for the socket's own name.
_SOCKET_DIR_MAX = 90


def _private_socket_dir(name: str) -> Path:
    """A fresh private directory for one VM's sockets, short enough for AF_UNIX paths
    (a long $TMPDIR falls back to /tmp)."""
    prefix = f"sq-{name[:20]}-"
    path = tempfile.mkdtemp(prefix=prefix)
    if len(path.encode()) > _SOCKET_DIR_MAX:
        os.rmdir(path)
        path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    return Path(path)


def _setpriv() -> str | None:
    return shutil.which("setpriv")


def missing_qemu_message(binary: str, arch: str) -> str:
    """What to tell a user whose QEMU binary is not installed: the Debian package and how."""
    package = ARCH_DEFAULTS[arch].debian_package
    where = "does not exist or is not executable" if "/" in binary else "not found on PATH"
    return (
        f"QEMU binary {binary!r} {where}: install the Debian package {package} with "
        f"`sudo apt-get install {package} qemu-utils`, or run `make setup` (installs every "
        f"package and the venv the harness needs)"
    )


def _check_boot_file(what: str, path: Path) -> None:
    """A kernel or initramfs that is missing or empty fails here, not as a silent guest."""
    if not path.is_file():
        raise ConfigError(
            f"{what} {path} does not exist: build the guest image with `make image` "
            f"(or `python -m harness image`)"
        )
    if path.stat().st_size == 0:
        raise ConfigError(
            f"{what} {path} is empty: the guest image is broken; rebuild it with {REBUILD_IMAGE}"
        )


class Machine:
    """A QEMU guest (see the module docstring for the lifecycle and its guarantees).

    Args:
        config: what to run.
        name: used for the artifact directory, the QEMU ``-name``, loggers and threads.
        artifacts_root: parent of this VM's artifact directory (a unique ``<name>[-N]`` is
            created inside); default ``build/runs/<new run id>/``.
        launch_timeout: seconds QEMU has to connect its console and QMP sockets.
        accel: a pre-made accelerator decision (tests inject one); default: decide at launch.
    """

    def __init__(
        self,
        config: MachineConfig,
        *,
        name: str = "vm",
        artifacts_root: Path | None = None,
        launch_timeout: float = DEFAULT_LAUNCH_TIMEOUT,
        accel: AccelChoice | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.name = name
        self.logger = log.getChild(name)
        self.artifacts_root = artifacts_root or default_runs_dir() / new_run_id()
        self.artifacts = VmArtifacts.create(self.artifacts_root, name)
        self.launch_timeout = launch_timeout
        self._clock = clock
        self._state = MachineState.IDLE
        self.accel: AccelChoice | None = accel
        self.argv: list[str] = []
        self.origin: float | None = None
        self.exit_info: ExitInfo | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._tempdir: Path | None = None
        self._listeners: list[socket.socket] = []
        self._stderr: BinaryIO | None = None
        self._console: Console | None = None
        self._qmp: QmpSession | None = None
        self._stop_how: str | None = None

    def __repr__(self) -> str:
        return f"<Machine {self.name} {self._state.name} pid={self.pid}>"

    # -- state ------------------------------------------------------------------------------
    @property
    def state(self) -> MachineState:
        return self._state

    def _set_state(self, state: MachineState) -> None:
        self.logger.debug("state %s -> %s", self._state.name, state.name)
        self._state = state

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """True while the QEMU process exists and has not exited."""
        return self._process is not None and self._process.poll() is None

    def now(self) -> float:
        """Seconds since launch (0 before it)."""
        return 0.0 if self.origin is None else self._clock() - self.origin

    @property
    def console(self) -> Console:
        """The serial console (its transcript stays readable after the machine stopped)."""
        if self._console is None:
            raise MachineStateError("console", self._state, (MachineState.RUNNING,))
        return self._console

    @property
    def qmp(self) -> QmpSession:
        if self._qmp is None:
            raise MachineStateError("qmp", self._state, (MachineState.RUNNING,))
        return self._qmp

    # -- launch -----------------------------------------------------------------------------
    @requires(MachineState.IDLE)
    def launch(self, deadline: Deadline | None = None) -> Machine:
        """Start QEMU and connect console and QMP; raise :class:`LaunchError` with evidence.

        On any failure the process is killed and everything released before the error leaves.
        """
        deadline = deadline or Deadline(self.launch_timeout, label=f"{self.name} launch")
        self._set_state(MachineState.LAUNCHING)
        try:
            self._pre_launch()
            self._start_process()
            self._post_launch(deadline)
        except BaseException as exc:
            self._stop_how = "launch-failed"
            self._post_shutdown()
            if isinstance(exc, _StartupProblem):
                self._raise_if_disk_in_use()
                raise LaunchError(
                    f"{self.name}: QEMU failed to start: {exc}",
                    argv=self.argv,
                    returncode=self._returncode(),
                    stderr=self.stderr_text(),
                ) from None
            if isinstance(exc, OSError):
                raise LaunchError(
                    f"{self.name}: cannot start QEMU: {exc}",
                    argv=self.argv,
                    returncode=self._returncode(),
                    stderr=self.stderr_text(),
                ) from exc
            raise
        self._set_state(MachineState.RUNNING)
        self.logger.info(
            "QEMU running: pid %s, %s, artifacts %s",
            self.pid,
            self.accel.name if self.accel else "?",
            self.artifacts.path,
        )
        return self

    def _raise_if_disk_in_use(self) -> None:
        """Turn QEMU's image-locking failure into :class:`DiskInUse` naming the holder."""
        stderr = self.stderr_text()
        conflict = lock_conflict(stderr)
        if conflict is None:
            return
        users = [user.describe() for user in disk_users(conflict.path)]
        holder = (
            ", ".join(users)
            if users
            else "another process (none of this user's processes has it open: another "
            "user's, or another host's on a shared filesystem)"
        )
        raise DiskInUse(
            f"{self.name}: disk image {conflict.path} is in use by {holder}: QEMU could not "
            f'get its "{conflict.lock}" lock. Stop that VM first, or give this one its own '
            f"copy of the disk",
            disk=conflict.path,
            users=users,
            argv=self.argv,
            returncode=self._returncode(),
            stderr=stderr,
        ) from None

    def _pre_launch(self) -> None:
        """Resolve the binary and accelerator, make the private dir, sockets and argv."""
        qemu_path = shutil.which(self.config.qemu)
        if qemu_path is None:
            raise DependencyMissing(missing_qemu_message(self.config.qemu, self.config.arch))
        for disk in self.config.disks:
            if disk.is_local_file and not Path(disk.file).exists():
                raise ConfigError(f"disk image {disk.file} does not exist")
        for what, path in (("kernel", self.config.kernel), ("initramfs", self.config.initramfs)):
            if path is not None:
                _check_boot_file(what, path)
        if self.accel is None:
            self.accel = choose_accel(self.config.arch, self.config.accel)
        self._tempdir = _private_socket_dir(self.name)
        endpoints = Endpoints(
            serial_socket=self._tempdir / "serial.sock", qmp_socket=self._tempdir / "qmp.sock"
        )
        for path in (endpoints.serial_socket, endpoints.qmp_socket):
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listeners.append(listener)
            listener.bind(os.fspath(path))
            listener.listen(1)
        self.argv = build_argv(
            self.config, endpoints, self.accel, qemu_path=qemu_path, name=self.name
        )
        self.artifacts.qemu_argv.write_text(display_argv(self.argv), encoding="utf-8")
        self._stderr = open(self.artifacts.qemu_stderr, "wb")  # noqa: SIM115 (see _post_shutdown)

    def _start_process(self) -> None:
        argv = list(self.argv)
        if self.config.pdeathsig:
            setpriv = _setpriv()
            if setpriv is not None:
                argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
            else:
                self.logger.warning("setpriv not found: QEMU will not die with a crashed harness")
        env = {**os.environ, **dict(self.config.env)}
        self.logger.debug("launching: %s", self.argv)
        self.origin = self._clock()
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            start_new_session=True,  # own process group: signals reach QEMU and its helpers only
            env=env,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)

    def _accept(self, listener: socket.socket, what: str, deadline: Deadline) -> socket.socket:
        while True:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise _StartupProblem(f"QEMU exited with code {code} before connecting its {what}")
            if deadline.expired:
                raise _StartupProblem(
                    f"QEMU did not connect its {what} within {deadline.seconds:g} s"
                )
            ready, _, _ = select.select([listener], [], [], deadline.timeout(cap=0.05))
            if ready:
                conn, _ = listener.accept()
                return conn

    def _post_launch(self, deadline: Deadline) -> None:
        """Accept QEMU's console and QMP connections and start their reader threads."""
        assert self.origin is not None
        serial_listener, qmp_listener = self._listeners
        serial = self._accept(serial_listener, "serial console", deadline)
        self._console = Console(
            serial,
            ConsoleLog(self.artifacts.uart_log, self.artifacts.uart_timestamps),
            origin=self.origin,
            name=self.name,
            clock=self._clock,
        )
        self._console.start()
        qmp_conn = self._accept(qmp_listener, "QMP monitor", deadline)
        self._qmp = QmpSession(
            self.name, log_path=self.artifacts.qmp_log, origin=self.origin, clock=self._clock
        )
        try:
            self._qmp.connect(qmp_conn, deadline)
        except QmpError as exc:
            raise _StartupProblem(f"QMP negotiation failed: {exc.detail}") from exc
        self._close_listeners()

    # -- stopping ---------------------------------------------------------------------------
    def shutdown(
        self, *, quit_timeout: float = QUIT_TIMEOUT, term_timeout: float = TERM_TIMEOUT
    ) -> ExitInfo | None:
        """Stop QEMU (QMP quit, SIGTERM, SIGKILL as needed) and clean up. Idempotent.

        Returns None for a machine that was never launched.
        """
        if self._state is MachineState.IDLE:
            self._set_state(MachineState.STOPPED)
            return None
        if self._state is MachineState.STOPPED:
            return self.exit_info
        self._set_state(MachineState.STOPPING)
        try:
            self._stop_how = self._escalate(quit_timeout, term_timeout)
        finally:
            self._post_shutdown()
        return self.exit_info

    @requires(MachineState.RUNNING)
    def power_cut(self) -> ExitInfo:
        """Pull the plug: SIGKILL QEMU now, no flush, no goodbye; then clean up.

        What the guest wrote but QEMU had not yet passed to the host kernel is lost, like
        a real power cut; the disk file keeps what reached it.
        """
        self._set_state(MachineState.STOPPING)
        try:
            self._stop_how = "exited" if not self.is_running() else "power-cut"
            self._kill_group(signal.SIGKILL)
            self._wait_process(KILL_TIMEOUT)
        finally:
            self._post_shutdown()
        assert self.exit_info is not None
        return self.exit_info

    @requires(MachineState.RUNNING)
    def wait(self, deadline: Deadline) -> ExitInfo:
        """Wait for QEMU to exit by itself (guest power-off) and clean up.

        Raises :class:`DeadlineExceeded` if it is still running at the deadline; the machine
        is left running (``with`` or :meth:`shutdown` stops it).
        """
        assert self._process is not None
        while self._process.poll() is None:
            deadline.check(f"{self.name}: waiting for the guest to power off")
            try:
                self._process.wait(deadline.timeout(cap=0.5))
            except subprocess.TimeoutExpired:
                continue
        info = self.shutdown()
        assert info is not None
        return info

    def _escalate(self, quit_timeout: float, term_timeout: float) -> str:
        if not self.is_running():
            return "exited"
        if self._shutdown_reason() is not None and self._wait_process(quit_timeout):
            return "exited"  # QEMU announced its shutdown (guest power-off) and is exiting
        if self._qmp is not None:
            try:
                self._qmp.quit(timeout=quit_timeout)
            except QmpError as exc:  # QEMU may close the socket before it answers
                self.logger.debug("quit: %s", exc)
            if self._wait_process(quit_timeout):
                return "quit"
            self.logger.warning("QEMU ignored QMP quit for %.1f s: SIGTERM", quit_timeout)
        self._kill_group(signal.SIGTERM)
        if self._wait_process(term_timeout):
            return "sigterm"
        self.logger.warning("QEMU ignored SIGTERM for %.1f s: SIGKILL", term_timeout)
        self._kill_group(signal.SIGKILL)
        self._wait_process(KILL_TIMEOUT)
        return "sigkill"

    def _kill_group(self, sig: signal.Signals) -> bool:
        """Send ``sig`` to QEMU's process group; False if it is already gone."""
        process = self._process
        if process is None or process.poll() is not None:
            return False
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return False
        except PermissionError:  # group gone and PID reused by someone else's session
            process.send_signal(sig)
        return True

    def _wait_process(self, timeout: float) -> bool:
        assert self._process is not None
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _returncode(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def _post_shutdown(self) -> None:
        """The one cleanup path: QEMU dead, then everything _pre_launch opened released.

        Runs after every stop and after a failed launch; each step runs even if one before
        it failed, and a second call does nothing.
        """
        if self._state is MachineState.STOPPED:
            return
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("kill QEMU", self._ensure_dead),
            ("close console", lambda: self._console and self._console.close()),
            ("close QMP", lambda: self._qmp and self._qmp.close()),
            ("close sockets", self._close_listeners),
            ("close stderr", lambda: self._stderr and self._stderr.close()),
            ("remove temp dir", self._remove_tempdir),
        ]
        interrupted: BaseException | None = None
        for what, step in steps:
            try:
                step()
            except Exception:
                self.logger.exception("cleanup step %r failed", what)
            except (KeyboardInterrupt, Terminated, SystemExit) as exc:  # finish, then raise
                interrupted = interrupted or exc
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self._process is not None and self.origin is not None:
            self.exit_info = ExitInfo(
                returncode=self._process.returncode,
                how=self._stop_how or "sigkill",
                at=self.now(),
                reason=self._shutdown_reason(),
            )
            self.logger.info("%s", self.exit_info.describe())
        self._set_state(MachineState.STOPPED)
        if interrupted is not None:
            raise interrupted
        if self._process is not None and self._process.returncode is None:
            raise ShutdownError(f"{self.name}: QEMU pid {self.pid} survived SIGKILL")

    def _ensure_dead(self) -> None:
        if self._process is None:
            return
        if self._stop_how == "launch-failed":
            # QEMU that refused to start is usually exiting already: let it finish writing
            # its error to stderr (the LaunchError's evidence) rather than kill it mid-way.
            self._wait_process(LAUNCH_EXIT_GRACE)
        if self._process.poll() is None:
            self.logger.warning("QEMU still running at cleanup: SIGKILL")
            self._stop_how = self._stop_how or "sigkill"
            self._kill_group(signal.SIGKILL)
        self._wait_process(KILL_TIMEOUT)

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners = []

    def _remove_tempdir(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def _shutdown_reason(self) -> str | None:
        if self._qmp is None:
            return None
        for event in reversed(self._qmp.events):
            if event.get("event") == "SHUTDOWN":
                return str(event.get("data", {}).get("reason"))
        return None

    # -- evidence ---------------------------------------------------------------------------
    def stderr_text(self, limit: int = STDERR_EVIDENCE_BYTES) -> str:
        """The tail of QEMU's stderr (what it said about a failure)."""
        with contextlib.suppress(OSError), open(self.artifacts.qemu_stderr, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            return handle.read().decode("utf-8", "replace")
        return ""

    def console_tail(self, max_lines: int = 40) -> str:
        return self._console.transcript.tail(max_lines) if self._console is not None else ""

    # -- reboots ----------------------------------------------------------------------------
    @requires(MachineState.STOPPED)
    def next_boot(self, *, name: str | None = None, **changes: Any) -> Machine:
        """A new, unlaunched Machine on the same disks (a reboot is a new QEMU process).

        ``changes`` are MachineConfig fields (usually ``kernel_args``). The artifacts go next
        to this machine's, under the same root.
        """
        return Machine(
            self.config.replace(**changes) if changes else self.config,
            name=name or self.name,
            artifacts_root=self.artifacts_root,
            launch_timeout=self.launch_timeout,
            accel=self.accel,
            clock=self._clock,
        )

    # -- context manager --------------------------------------------------------------------
    def __enter__(self) -> Machine:
        if self._state is MachineState.IDLE:
            self.launch()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.shutdown()
            return
        # On an error path, stop fast and never let a cleanup problem hide the original error.
        try:
            self.shutdown(quit_timeout=1.0, term_timeout=1.0)
        except HarnessError:
            self.logger.exception(
                "shutdown after %s failed", exc_type.__name__ if exc_type else "?"
            )


class _StartupProblem(Exception):
    """QEMU died or stalled while connecting; turned into LaunchError with its stderr."""
