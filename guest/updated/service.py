"""updated's daemon: the A/B boot control authority, over statefsd.

Operations (IPC frames, ``docs/storage/ipc-protocol.md``), each replying with the new state as
JSON; each transition is a read-modify-write of ``/state/boot/bootctl`` written with one synced
put, so it is atomic and durable when the reply arrives:

``HELLO``          -> the current state
``SET_ACTIVE``     key = slot name, value = tries (decimal, optional)
``BOOT_ATTEMPT``   count a boot attempt (what the bootloader would do)
``MARK_SUCCESSFUL``
``FAIL_CURRENT``
"""

import errno
import json
from collections.abc import Callable

from guest.console import emit
from guest.ipc import frames
from guest.ipc.client import FrameClient
from guest.ipc.frames import Frame
from guest.ipc.server import FrameServer, Peer, ok
from guest.statefs.errors import StatefsError
from guest.statefsd.client import DEFAULT_SOCKET as STATEFSD_SOCKET
from guest.statefsd.client import StatefsClient
from guest.updated.bootctl import BOOTCTL_KEY, DEFAULT_TRIES, BootControl

DEFAULT_SOCKET = "/run/updated/updated.sock"
OP_SET_ACTIVE = 48
OP_BOOT_ATTEMPT = 49
OP_MARK_SUCCESSFUL = 50
OP_FAIL_CURRENT = 51
frames.name_ops(
    {
        OP_SET_ACTIVE: "SET_ACTIVE",
        OP_BOOT_ATTEMPT: "BOOT_ATTEMPT",
        OP_MARK_SUCCESSFUL: "MARK_SUCCESSFUL",
        OP_FAIL_CURRENT: "FAIL_CURRENT",
    }
)


def load_or_init(client: StatefsClient) -> tuple[BootControl, str]:
    """The stored state, or the factory state written (synced) on first start."""
    try:
        return BootControl.decode(client.get(BOOTCTL_KEY)), "loaded"
    except StatefsError as exc:
        if exc.errno != errno.ENOENT:
            raise
    state = BootControl.initial()
    client.put(BOOTCTL_KEY, state.encode(), sync=True)
    return state, "initialized"


class BootControlService:
    def __init__(self, client: StatefsClient, state: BootControl, socket_path: str) -> None:
        self.client = client
        self.state = state
        handlers = {
            frames.OP_HELLO: self._hello,
            OP_SET_ACTIVE: self._set_active,
            OP_BOOT_ATTEMPT: lambda request, _peer: self._apply(request, BootControl.boot_attempt),
            OP_MARK_SUCCESSFUL: lambda request, _peer: self._apply(
                request, BootControl.mark_successful
            ),
            OP_FAIL_CURRENT: lambda request, _peer: self._apply(request, BootControl.fail_current),
        }
        self.frames = FrameServer(socket_path, handlers, name="updated")

    def _reply(self, request: Frame) -> Frame:
        return ok(request, self.state.encode())

    def _hello(self, request: Frame, _peer: Peer) -> Frame:
        return self._reply(request)

    def _apply(self, request: Frame, transition: Callable[[BootControl], BootControl]) -> Frame:
        new = transition(self.state)
        self.client.put(BOOTCTL_KEY, new.encode(), sync=True)
        self.state = new
        return self._reply(request)

    def _set_active(self, request: Frame, _peer: Peer) -> Frame:
        slot = request.key.decode("ascii", "replace")
        try:
            tries = int(request.value) if request.value else DEFAULT_TRIES
        except ValueError:
            raise StatefsError(errno.EINVAL, "tries must be a decimal number") from None
        return self._apply(request, lambda state: state.set_active(slot, tries))


def run_updated(
    socket_path: str = DEFAULT_SOCKET,
    statefsd_socket: str = STATEFSD_SOCKET,
    *,
    on_ready: Callable[[], None] | None = None,
) -> int:
    try:
        client = StatefsClient.connect(statefsd_socket, wait=10.0)
        state, origin = load_or_init(client)
    except StatefsError as exc:
        code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        emit(f"updated: fatal {code} bootctl unavailable: {exc.strerror}")
        return 1
    summary = json.dumps(state.to_json()["slots"], sort_keys=True, separators=(",", ":"))
    emit(f"updated: bootctl {origin}: current={state.current} slots={summary}")
    service = BootControlService(client, state, socket_path)
    service.frames.listen()
    service.frames.install_signal_handlers()
    emit("updated: ready")
    if on_ready is not None:
        on_ready()
    try:
        service.frames.serve_forever()
    finally:
        client.close()
    return 0


class BootControlClient(FrameClient):
    """Client of updated: each call returns the state after it."""

    service = "updated"

    def _state(self, op: int, key: bytes = b"", value: bytes = b"") -> BootControl:
        return BootControl.decode(self.request(op, key, value).value)

    def state(self) -> BootControl:
        return self._state(frames.OP_HELLO)

    def set_active(self, slot: str, tries: int = DEFAULT_TRIES) -> BootControl:
        return self._state(OP_SET_ACTIVE, slot.encode("ascii"), str(tries).encode("ascii"))

    def boot_attempt(self) -> BootControl:
        return self._state(OP_BOOT_ATTEMPT)

    def mark_successful(self) -> BootControl:
        return self._state(OP_MARK_SUCCESSFUL)

    def fail_current(self) -> BootControl:
        return self._state(OP_FAIL_CURRENT)
