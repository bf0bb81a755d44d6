"""The harness's error tree: one root, and every failure carries its evidence.

A QEMU test that fails in CI is debugged from its report alone, so an error names what was
expected, what was seen and where the rest is (argv, exit code, stderr tail, console excerpt,
artifact directory). Causes are chained with ``raise ... from``. ``BaseException``\\ s
(Ctrl-C, SIGTERM turned into :class:`Terminated`, pytest's outcomes) get cleanup but are never
wrapped.

::

    HarnessError
     ├── ConfigError            a config, a kernel argument or a contract file is invalid
     │    └── ContractError     the marker contract data is invalid (names the entry)
     ├── DependencyMissing      QEMU, the image builder or the venv is not installed
     ├── AccelUnavailable       an accelerator was forced but does not work here
     ├── MachineStateError      a Machine method was called in the wrong state
     ├── LaunchError            QEMU did not start: argv, exit code, stderr
     │    └── DiskInUse         another process holds the disk image (QEMU's image locking)
     ├── DeadlineExceeded       a deadline passed while waiting for something
     ├── ConsoleError           the serial console broke (send after EOF, ...)
     ├── QmpError               a QMP command failed: command, cause
     ├── ShutdownError          QEMU could not be stopped (should never happen)
     ├── ContractFailure        the guest did not meet the marker contract: the report
     ├── ImageError             the guest image could not be built (harness.image.errors)
     └── PowerCutError          the power-cut disk server or its cache (harness.powercut)
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Sequence


class HarnessError(Exception):
    """Root of every error the harness raises on purpose.

    ``evidence`` is the multi-line context a reader needs (a stderr tail, a console excerpt);
    ``str()`` shows the one-line message followed by the evidence.
    """

    def __init__(self, message: str, *, evidence: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.evidence = evidence

    def __str__(self) -> str:
        if not self.evidence:
            return self.message
        return f"{self.message}\n{self.evidence.rstrip()}"


class ConfigError(HarnessError):
    """A configuration value is invalid; the message names the field and the value."""


class ContractError(ConfigError):
    """The marker contract data is invalid; the message names the file and the entry."""


class DependencyMissing(HarnessError):
    """Something the harness needs is not installed; the message says how to install it."""


class AccelUnavailable(HarnessError):
    """An accelerator was explicitly requested but cannot be used; ``reason`` says why."""

    def __init__(self, accel: str, reason: str) -> None:
        super().__init__(f"accelerator {accel!r} is not usable here: {reason}")
        self.accel = accel
        self.reason = reason


class MachineStateError(HarnessError):
    """A Machine method was called in a state that does not allow it.

    The states are :class:`harness.vm.machine.MachineState` members, typed as plain enums so
    this module imports nothing of the harness: nbdkit's embedded interpreter loads it (through
    :mod:`harness.powercut.errors`) with the standard library only.
    """

    def __init__(self, method: str, actual: enum.Enum, allowed: Sequence[enum.Enum]) -> None:
        names = ", ".join(state.name for state in allowed)
        super().__init__(
            f"Machine.{method}() needs state {names}, but the machine is {actual.name}"
        )
        self.method = method
        self.actual = actual
        self.allowed = tuple(allowed)


class LaunchError(HarnessError):
    """QEMU did not come up: carries the command line, exit code (None: still running or
    killed by us) and QEMU's stderr."""

    def __init__(
        self, message: str, *, argv: Sequence[str], returncode: int | None, stderr: str
    ) -> None:
        lines = [f"command: {shlex.join(argv)}", f"exit code: {returncode}"]
        lines.append("stderr:" if stderr.strip() else "stderr: (empty)")
        lines.extend(f"  {line}" for line in stderr.rstrip().splitlines()[-40:])
        # No command: refused before QEMU was started (nothing ran, so no evidence to show).
        super().__init__(message, evidence="\n".join(lines) if argv else "")
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


class DiskInUse(LaunchError):
    """QEMU could not lock a disk image another process has open (``Failed to get "write"
    lock``); ``disk`` names the image, ``users`` the processes found holding it."""

    def __init__(
        self,
        message: str,
        *,
        disk: str,
        users: Sequence[str],
        argv: Sequence[str],
        returncode: int | None,
        stderr: str,
    ) -> None:
        super().__init__(message, argv=argv, returncode=returncode, stderr=stderr)
        self.disk = disk
        self.users = tuple(users)


class DeadlineExceeded(HarnessError):
    """A deadline passed; ``label`` says which one and ``seconds`` how long it was."""

    def __init__(self, what: str, *, label: str, seconds: float, evidence: str = "") -> None:
        super().__init__(
            f"{what}: deadline {label or '(unnamed)'} of {seconds:g} s passed", evidence=evidence
        )
        self.label = label
        self.seconds = seconds


class ConsoleError(HarnessError):
    """The serial console cannot be used (closed, QEMU gone)."""


class QmpError(HarnessError):
    """A QMP command failed or timed out; ``command`` names it, ``__cause__`` is the reason."""

    def __init__(self, command: str, detail: str) -> None:
        super().__init__(f"QMP {command!r} failed: {detail}")
        self.command = command
        self.detail = detail


class ShutdownError(HarnessError):
    """QEMU survived SIGKILL (a kernel in trouble); raised only after all other cleanup."""


class ContractFailure(HarnessError):
    """The guest did not meet the marker contract; ``report`` is the full text report."""

    def __init__(self, message: str, *, report: str) -> None:
        super().__init__(message, evidence=report)
        self.report = report


class Terminated(BaseException):
    """SIGTERM/SIGHUP turned into an exception so ``with`` blocks clean up (CLI only)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum
