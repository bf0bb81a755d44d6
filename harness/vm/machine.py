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
* QEMU is a :class:`harness.process.Child`: its own process group, SIGKILLed by an ``atexit``
  hook if still running when the interpreter exits, and run under ``setpriv --pdeathsig KILL``
  so the kernel kills it when the harness dies without running any Python (SIGKILL, an xdist
  worker crash). The power-cut disk server gets the same guarantees from the same module.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from harness.artifacts import VmArtifacts, default_runs_dir, new_run_id
from harness.deadline import Deadline
from harness.diagnosis import disk_in_use_error
from harness.errors import (
    HarnessError,
    LaunchError,
    MachineStateError,
    QmpError,
    ShutdownError,
    Terminated,
)
from harness.process import Child, file_tail, pdeathsig_prefix
from harness.vm.accel import AccelChoice, choose_accel
from harness.vm.config import MachineConfig
from harness.vm.console import Console, ConsoleLog
from harness.vm.preflight import preflight
from harness.vm.qemu_args import build_argv, hand_script
from harness.vm.qmp import QmpSession
from harness.vm.sockets import Listeners, StartupProblem
from harness.vm.state import ExitInfo, MachineState, requires

log = logging.getLogger(__name__)

DEFAULT_LAUNCH_TIMEOUT = 15.0
QUIT_TIMEOUT = 3.0
TERM_TIMEOUT = 3.0
KILL_TIMEOUT = 10.0
STDERR_EVIDENCE_BYTES = 16384
LAUNCH_EXIT_GRACE = 0.5


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
        self._process: Child | None = None
        self._sockets: Listeners | None = None
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
            if isinstance(exc, StartupProblem):
                in_use = disk_in_use_error(
                    self.name, self.argv, self._returncode(), self.stderr_text()
                )
                if in_use is not None:
                    raise in_use from None
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

    def _pre_launch(self) -> None:
        """Resolve the binary and accelerator, make the private dir, sockets and argv."""
        qemu_path = preflight(self.config)
        if self.accel is None:
            self.accel = choose_accel(self.config.arch, self.config.accel)
        self._sockets = Listeners(self.name)
        self.argv = build_argv(
            self.config, self._sockets.endpoints, self.accel, qemu_path=qemu_path, name=self.name
        )
        self.artifacts.qemu_argv.write_text(hand_script(self.argv), encoding="utf-8")
        self._stderr = open(self.artifacts.qemu_stderr, "wb")  # noqa: SIM115 (see _post_shutdown)

    def _start_process(self) -> None:
        prefix: list[str] = []
        if self.config.pdeathsig:
            prefix = pdeathsig_prefix()
            if not prefix:
                self.logger.warning("setpriv not found: QEMU will not die with a crashed harness")
        assert self._stderr is not None
        self.logger.debug("launching: %s", self.argv)
        self.origin = self._clock()
        self._process = Child(
            [*prefix, *self.argv], output=self._stderr, env={**os.environ, **dict(self.config.env)}
        )

    def _post_launch(self, deadline: Deadline) -> None:
        """Accept QEMU's console and QMP connections and start their reader threads."""
        assert self.origin is not None
        assert self._process is not None
        assert self._sockets is not None
        serial = self._sockets.accept(0, "serial console", deadline, self._process.poll)
        self._console = Console(
            serial,
            ConsoleLog(self.artifacts.uart_log, self.artifacts.uart_timestamps),
            origin=self.origin,
            name=self.name,
            clock=self._clock,
        )
        self._console.start()
        qmp_conn = self._sockets.accept(1, "QMP monitor", deadline, self._process.poll)
        self._qmp = QmpSession(
            self.name, log_path=self.artifacts.qmp_log, origin=self.origin, clock=self._clock
        )
        try:
            self._qmp.connect(qmp_conn, deadline)
        except QmpError as exc:
            raise StartupProblem(f"QMP negotiation failed: {exc.detail}") from exc
        self._sockets.close()

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
            self._process.wait(deadline.timeout(cap=0.5))
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
        return self._process is not None and self._process.signal(sig)

    def _wait_process(self, timeout: float) -> bool:
        assert self._process is not None
        return self._process.wait(timeout)

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
            ("close console", lambda: _call_if_set(self._console, "close")),
            ("close QMP", lambda: _call_if_set(self._qmp, "close")),
            ("close sockets", lambda: _call_if_set(self._sockets, "close")),
            ("close stderr", lambda: _call_if_set(self._stderr, "close")),
            ("remove temp dir", lambda: _call_if_set(self._sockets, "remove")),
        ]
        interrupted: BaseException | None = None
        for what, step in steps:
            try:
                step()
            except Exception:
                self.logger.exception("cleanup step %r failed", what)
            except (KeyboardInterrupt, Terminated, SystemExit) as exc:  # finish, then raise
                interrupted = interrupted or exc
        if self._process is not None:
            self._process.release()
        if self._process is not None and self.origin is not None:
            self.exit_info = ExitInfo(
                returncode=self._process.returncode,
                how=self._stop_how or "sigkill",
                at=self.now(),
                reason=self._shutdown_reason(),
                silent_poweroff=self.config.defaults.silent_poweroff,
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
        return file_tail(self.artifacts.qemu_stderr, limit)

    def status(self) -> str:
        """The state for a report; a RUNNING machine whose QEMU already exited (nobody has
        waited for it yet) says so rather than "RUNNING"."""
        if self._state is MachineState.RUNNING and not self.is_running():
            reason = self._shutdown_reason()
            detail = f", shutdown reason {reason}" if reason else ""
            return f"QEMU has exited (exit code {self._returncode()}{detail})"
        return f"{self._state.name}, pid {self.pid}"

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


def _call_if_set(target: object, method: str) -> None:
    """A clean-up step on a part that may never have been created."""
    if target is not None:
        getattr(target, method)()
