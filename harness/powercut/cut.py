"""The power cut: when it comes, and the order in which the plug is pulled.

**When.** A seeded random delay after the boot's recovery marker, then the cycle's *trigger*
(the schedule and the triggers ``format``, ``recovery`` and ``compaction`` are
:mod:`harness.powercut.triggers`):

``time``   cut at that moment;
``dirty``  then wait until the cache holds writes (the journal has records);
``flush``  then wait until a flush is in progress (its undo record exists).

The guest spends most of its time computing (TCG), so a purely random moment usually finds
the cache clean; the other two make the fates and the rollback of an unfinished flush happen in
most campaigns. A condition not met within :data:`TRIGGER_WAIT` seconds cuts anyway, reported
as ``time``.

**How** (:func:`cut_power`): SIGSTOP the disk server, SIGKILL QEMU, SIGKILL the disk server.
Not QMP ``stop`` or ``quit``: QEMU flushes its disks then, making unflushed writes durable.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.deadline import Deadline
from harness.powercut.journal import flush_in_progress, journal_has_writes
from harness.powercut.server import DiskServer, ServerState
from harness.powercut.watch import BootWatch
from harness.vm.machine import Machine, MachineState

CUT_TRIGGERS: dict[str, Callable[[Path], bool] | None] = {
    "time": None,
    "dirty": journal_has_writes,
    "flush": flush_in_progress,
}
#: Seconds a ``dirty`` or ``flush`` cut waits for its condition (scaled by the multiplier).
TRIGGER_WAIT = 2.0
#: Poll interval of those conditions: well under a flush's duration (~5 ms here).
TRIGGER_POLL = 0.0005
#: The GIL switch interval while polling (see :func:`await_trigger`).
TRIGGER_SWITCH_INTERVAL = 0.0001


@dataclass(frozen=True)
class CutPlan:
    delay: float
    trigger: str


def plan_cut(rng: random.Random, window: tuple[float, float], trigger: str) -> CutPlan:
    """The delay (uniform in ``window``, from the cycle's seeded ``rng``) before ``trigger``'s
    condition is awaited (the trigger comes from the schedule, :mod:`harness.powercut.triggers`)."""
    return CutPlan(rng.uniform(*window), trigger)


def await_trigger(
    trigger: str,
    condition: Callable[[], bool] | None,
    server: DiskServer,
    watch: BootWatch,
    wait: Deadline,
) -> str:
    """Wait for ``trigger``'s condition on the cache and freeze the server the moment it holds.

    Returns the trigger that took effect: ``trigger`` if its condition held (the server is then
    frozen), ``time`` for the ``time`` trigger, at ``wait``'s expiry, or when the boot failed
    or its console ended first (the caller checks ``watch``).

    The console drainer thread runs Python for every byte it reads; with the default 5 ms GIL
    switch interval it could hold this thread between the poll and the SIGSTOP for longer than
    a whole flush lasts, so the interval is shortened while polling.
    """
    if condition is None:
        return "time"
    previous = sys.getswitchinterval()
    sys.setswitchinterval(TRIGGER_SWITCH_INTERVAL)
    try:
        while not wait.expired:
            if condition():
                server.freeze()
                return trigger
            watch.pump(TRIGGER_POLL)
            if watch.failed or watch.ended:
                break
    finally:
        sys.setswitchinterval(previous)
    return "time"


def await_early(
    trigger: str,
    condition: Callable[[], bool],
    server: DiskServer,
    watch: BootWatch,
    wait: Deadline,
) -> bool:
    """Before the recovery marker (``format``, ``recovery``): freeze the server the moment
    ``condition`` holds, or (``recovery``) when statefsd reports its replay. False if the
    recovery marker, a failure, the console's end or ``wait`` came first: no early cut."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(TRIGGER_SWITCH_INTERVAL)
    try:
        while not wait.expired:
            replayed = trigger == "recovery" and watch.replay[0] is not None
            if condition() or replayed:
                server.freeze()
                return True
            watch.pump(TRIGGER_POLL)
            if watch.recovered is not None or watch.failed or watch.ended:
                return False
    finally:
        sys.setswitchinterval(previous)
    return False


def cut_power(server: DiskServer, machine: Machine) -> None:
    """Pull the plug, in this order: SIGSTOP the disk server (from then on nothing reaches the
    backing file and no flush completes; one caught in the middle stays in the middle),
    SIGKILL QEMU, SIGKILL the disk server. Each step is skipped if already done (a frozen
    server, a QEMU that exited); the server is killed even if killing QEMU fails."""
    try:
        if server.state is ServerState.RUNNING:
            server.freeze()
        if machine.state is MachineState.RUNNING:
            machine.power_cut()
    finally:
        server.kill()
