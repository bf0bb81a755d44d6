"""keystored's daemon: load (or create) the device key, announce its fingerprint, serve it.

Operations (on the IPC frames, ``docs/storage/ipc-protocol.md``):

``HELLO``  -> JSON ``{"algorithm", "public", "fingerprint", "origin"}``
``SIGN``   value = message (<= 64 KiB) -> the 64-byte Ed25519 signature

The private seed never leaves this process: not on the socket, the console or in errors.
"""

import errno
import json
from collections.abc import Callable

from guest.console import emit
from guest.ipc import frames
from guest.ipc.client import FrameClient
from guest.ipc.frames import Frame
from guest.ipc.server import FrameServer, Peer, ok
from guest.keystored.keys import DeviceKey, load_or_create
from guest.statefs.errors import StatefsError
from guest.statefsd.client import DEFAULT_SOCKET as STATEFSD_SOCKET
from guest.statefsd.client import StatefsClient

DEFAULT_SOCKET = "/run/keystored/keystored.sock"
OP_SIGN = 32
MAX_SIGN_BYTES = 64 * 1024
frames.name_ops({OP_SIGN: "SIGN"})


def entropy_source() -> str:
    """The kernel's current hardware RNG (``virtio_rng.0`` in the VM), or ``none``."""
    try:
        with open("/sys/class/misc/hw_random/rng_current", encoding="ascii") as handle:
            return handle.read().strip() or "none"
    except OSError:
        return "none"


class KeyService:
    def __init__(self, key: DeviceKey, origin: str, socket_path: str) -> None:
        self.key = key
        self.origin = origin
        self.frames = FrameServer(
            socket_path, {frames.OP_HELLO: self._hello, OP_SIGN: self._sign}, name="keystored"
        )

    def _hello(self, request: Frame, _peer: Peer) -> Frame:
        info = {
            "algorithm": "ed25519",
            "public": self.key.public.hex(),
            "fingerprint": self.key.fingerprint,
            "origin": self.origin,
        }
        return ok(request, json.dumps(info, sort_keys=True).encode("utf-8"))

    def _sign(self, request: Frame, _peer: Peer) -> Frame:
        if len(request.value) > MAX_SIGN_BYTES:
            raise StatefsError(errno.EMSGSIZE, f"messages are signed up to {MAX_SIGN_BYTES} bytes")
        return ok(request, self.key.sign(request.value))


def run_keystored(
    socket_path: str = DEFAULT_SOCKET,
    statefsd_socket: str = STATEFSD_SOCKET,
    *,
    on_ready: Callable[[], None] | None = None,
) -> int:
    try:
        with StatefsClient.connect(statefsd_socket, wait=10.0) as client:
            key, origin = load_or_create(client)
    except StatefsError as exc:
        code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        emit(f"keystored: fatal {code} device key unavailable: {exc.strerror}")
        return 1
    if origin == "created":
        emit(f"keystored: created a device key from the kernel's entropy ({entropy_source()})")
    emit(f"keystored: device key fingerprint {key.fingerprint} ({origin})")
    service = KeyService(key, origin, socket_path)
    service.frames.listen()
    service.frames.install_signal_handlers()
    emit("keystored: ready")
    if on_ready is not None:
        on_ready()
    service.frames.serve_forever()
    return 0


class KeystoreClient(FrameClient):
    """Client of keystored: ``info()`` (HELLO) and ``sign()``."""

    service = "keystored"

    def info(self) -> dict:
        return self.hello()

    def sign(self, message: bytes) -> bytes:
        return self.request(OP_SIGN, value=message).value
