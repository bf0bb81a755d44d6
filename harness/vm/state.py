"""A Machine's lifecycle states, the guard that enforces them, and how its QEMU ended.

Kept apart from :mod:`harness.vm.machine` so that what only reads a machine's state (the
contract runner, the pytest plugin, the power-cut sequence) needs none of its process code.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from harness.errors import MachineStateError

P = ParamSpec("P")
R = TypeVar("R")


class _HasState(Protocol):
    @property
    def state(self) -> MachineState: ...


S = TypeVar("S", bound=_HasState)


class MachineState(enum.Enum):
    IDLE = "idle"
    LAUNCHING = "launching"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


def requires(
    *states: MachineState,
) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """Guard a method: raise :class:`MachineStateError` unless the machine is in ``states``."""

    def decorate(
        method: Callable[Concatenate[S, P], R],
    ) -> Callable[Concatenate[S, P], R]:
        @functools.wraps(method)
        def guarded(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
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
    ``silent_poweroff``: on this architecture a guest power-off ends QEMU with status 0 and no
    event at all (:attr:`harness.vm.arch.ArchProfile.silent_poweroff`).
    """

    returncode: int | None
    how: str
    at: float
    reason: str | None = None
    silent_poweroff: bool = False

    @property
    def guest_powered_off(self) -> bool:
        if self.how != "exited" or self.returncode != 0:
            return False
        return self.reason == "guest-shutdown" or (self.silent_poweroff and self.reason is None)

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
