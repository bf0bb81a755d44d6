"""A thin, blocking facade over ``qemu.qmp``'s asyncio ``QMPClient``, one per VM.

``qemu.qmp.legacy`` runs the event loop only while a call is in progress, so events that
arrive between calls wait unseen and their host times are lost. Here each VM's client lives on
its own event loop in a daemon thread: every event is recorded the moment it arrives (into
``qmp.jsonl`` with seconds since launch, and into a list :meth:`wait_event` searches), and the
test's thread talks to it through :func:`asyncio.run_coroutine_threadsafe` with deadlines.
Commands, replies and events are logged with direction arrows on a child logger per VM.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TextIO, TypeVar

from qemu.qmp import QMPClient
from qemu.qmp.error import QMPError

from harness.deadline import Deadline
from harness.errors import DeadlineExceeded, QmpError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Events the harness cares about; every event is recorded all the same.
SHUTDOWN = "SHUTDOWN"
RESET = "RESET"
GUEST_PANICKED = "GUEST_PANICKED"
STOP = "STOP"
RESUME = "RESUME"

DEFAULT_COMMAND_TIMEOUT = 10.0


class _PeerGoneFilter(logging.Filter):
    """qemu.qmp logs an ERROR when QEMU closes the socket under its reader task, or before
    its greeting. QEMU exiting (a guest power-off, a power cut, a start-up failure such as a
    locked disk) does exactly that, so it is recorded at DEBUG instead; real QMP failures
    still reach the harness as exceptions (a failed launch as LaunchError with QEMU's stderr)."""

    _EXPECTED = ("ConnectionResetError", "EOFError", "BrokenPipeError", "end-of-file")
    _WHERE = (
        "Task.Reader",
        "Failed to receive Greeting",
        "Failed to establish session",
        "Negotiation failed",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if (
            record.levelno > logging.DEBUG
            and message.startswith(self._WHERE)
            and any(word in message for word in self._EXPECTED)
        ):
            record.levelno = logging.DEBUG
            record.levelname = "DEBUG"
        return True


_PEER_GONE_FILTER = _PeerGoneFilter()


def _quiet_peer_gone(name: str) -> None:
    for prefix in ("qemu.qmp.protocol", "qemu.qmp.qmp_client"):
        logger = logging.getLogger(f"{prefix}.{name}")
        if _PEER_GONE_FILTER not in logger.filters:
            logger.addFilter(_PEER_GONE_FILTER)


class QmpSession:
    """One QMP connection on a private event loop thread (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        log_path: Path | None = None,
        origin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.logger = log.getChild(name)
        _quiet_peer_gone(name)
        self._clock = clock
        self._origin = clock() if origin is None else origin
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"qmp-{name}", daemon=True
        )
        self._client: QMPClient | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._loop.set_exception_handler(self._on_loop_error)
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._log_file: TextIO | None = (
            open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
        )
        self._log_lock = threading.Lock()
        self._closed = False
        self.greeting: dict[str, Any] | None = None

    # -- plumbing ---------------------------------------------------------------------------
    def _now(self) -> float:
        return self._clock() - self._origin

    def _record(self, direction: str, message: Any) -> None:
        """Append one line to qmp.jsonl: host time, direction (> sent, < received, ! event)."""
        if self._log_file is None:
            return
        line = json.dumps(
            {"t": round(self._now(), 6), "dir": direction, "msg": message}, default=str
        )
        with self._log_lock:
            if not self._log_file.closed:
                self._log_file.write(line + "\n")
                self._log_file.flush()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        if not self._thread.is_alive():
            coro.close()
            raise QmpError(what, "the QMP session is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise QmpError(what, f"no answer within {timeout:g} s") from exc
        except (QMPError, OSError, EOFError, asyncio.CancelledError) as exc:
            raise QmpError(what, f"{type(exc).__name__}: {exc}") from exc

    # -- lifecycle --------------------------------------------------------------------------
    def connect(self, sock: socket.socket, deadline: Deadline) -> None:
        """Negotiate QMP on an accepted socket and start recording events."""
        self._thread.start()

        async def _connect() -> None:
            client = QMPClient(self.name)
            self._client = client
            await client.connect(sock)

        self._call(_connect(), deadline.timeout(), "qmp_capabilities")
        assert self._client is not None
        greeting = self._client.greeting
        self.greeting = dict(greeting._asdict()) if greeting is not None else None
        self._record("<", {"greeting": self.greeting})
        self._call(self._start_pump(), deadline.timeout(), "start event pump")
        self.logger.debug("QMP connected: %s", self.greeting)

    async def _start_pump(self) -> None:
        self._pump_task = asyncio.get_running_loop().create_task(self._pump_events())

    async def _pump_events(self) -> None:
        assert self._client is not None
        while True:
            message = await self._client.events.get()
            event = dict(message)
            event["host_t"] = round(self._now(), 6)
            self.logger.debug("<-- event %s %s", event.get("event"), event.get("data", {}))
            self._record("!", event)
            with self._cond:
                self._events.append(event)
                self._cond.notify_all()

    def close(self, timeout: float = 2.0) -> None:
        """Disconnect, stop the loop thread, close qmp.jsonl. Idempotent, never raises for a
        peer that is already gone (QEMU exiting closes the socket first)."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            try:
                self._call(self._teardown(), timeout, "disconnect")
            except QmpError as exc:
                self.logger.debug("disconnect: %s", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()
        with self._log_lock:
            if self._log_file is not None:
                self._log_file.close()
        with self._cond:
            self._cond.notify_all()

    async def _teardown(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        if self._client is not None:
            try:
                await self._client.disconnect()
            except (QMPError, OSError, EOFError) as exc:  # the peer went first: expected
                self.logger.debug("disconnect after the peer left: %r", exc)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # qemu.qmp leaves a future with the reader's EOFError when QEMU exits first; that is
        # the normal end of a VM, not an error worth a traceback on stderr.
        self.logger.debug(
            "event loop: %s", context.get("message"), exc_info=context.get("exception")
        )

    # -- commands ---------------------------------------------------------------------------
    def execute(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float = DEFAULT_COMMAND_TIMEOUT,
    ) -> Any:
        """Run one QMP command and return its ``return`` value; raises :class:`QmpError`."""
        if self._client is None:
            raise QmpError(command, "not connected")
        message = {"execute": command, **({"arguments": arguments} if arguments else {})}
        self.logger.debug("--> %s", message)
        self._record(">", message)
        try:
            result = self._call(self._client.execute(command, arguments), timeout, command)
        except QmpError as exc:
            self._record("<", {"error": exc.detail})
            raise
        self.logger.debug("<-- %s", result)
        self._record("<", {"return": result})
        return result

    def query_status(self) -> dict[str, Any]:
        return self.execute("query-status")

    def query_kvm(self) -> dict[str, Any]:
        return self.execute("query-kvm")

    def stop(self) -> None:
        self.execute("stop")

    def cont(self) -> None:
        self.execute("cont")

    def system_reset(self) -> None:
        self.execute("system_reset")

    def quit(self, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> None:
        self.execute("quit", timeout=timeout)

    # -- events -----------------------------------------------------------------------------
    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event so far (each with ``host_t``, seconds since launch)."""
        with self._cond:
            return list(self._events)

    def wait_event(
        self, names: str | Iterable[str], deadline: Deadline, *, since: int = 0
    ) -> dict[str, Any]:
        """The first event named in ``names`` at index ``since`` or later in :attr:`events`.

        Pass ``since=len(session.events)`` before triggering something to wait only for the
        events it causes. Raises :class:`DeadlineExceeded` with the events seen.
        """
        wanted = {names} if isinstance(names, str) else set(names)

        def find() -> dict[str, Any] | None:
            for event in self._events[since:]:
                if event.get("event") in wanted:
                    return event
            return None

        with self._cond:
            while True:
                found = find()
                if found is not None:
                    return found
                if deadline.expired or self._closed:
                    seen = ", ".join(str(e.get("event")) for e in self._events) or "none"
                    raise DeadlineExceeded(
                        f"{self.name}: waiting for QMP event {'/'.join(sorted(wanted))}",
                        label=deadline.label,
                        seconds=deadline.seconds,
                        evidence=f"events seen: {seen}",
                    )
                self._cond.wait(deadline.timeout(cap=0.5))
