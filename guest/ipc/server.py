"""A frame server: one selector loop answering requests from a table of handlers.

Every connection is non-blocking with its own incremental decoder and output buffer, so a
client that sends half a frame and stalls, or never reads its replies, cannot block the others.
Requests are handled one at a time, in arrival order, so a handler never interleaves with
another (statefsd relies on this for BATCH).

Bad input never stops the server: an undecodable header gets an error reply and that
connection is closed; a handler's :class:`OSError` (the store's errors are ``OSError``) or
:class:`ProtocolError` becomes an error reply with its errno. A handler bug (any other
exception) is reported on the console with its traceback, which the harness treats as a
failure, and answered with EIO; the server keeps serving.

Every connection is known by its peer credentials (``SO_PEERCRED``: the uid, gid and pid the
kernel recorded when the client connected), which handlers receive with each request; nothing a
client sends can change them. One uid holds at most ``MAX_CONNECTIONS_PER_UID`` connections and
a connection is answered at most ``MAX_REQUESTS_PER_TURN`` requests before the others get
theirs, so one client (or a crowd of one user's clients) cannot starve the rest.
"""

import errno
import os
import selectors
import signal
import socket
import stat
import struct
import time
from collections import deque
from collections.abc import Callable

from guest.console import emit, emit_traceback
from guest.ipc import frames
from guest.ipc.frames import Frame, FrameDecoder, ProtocolError

#: Concurrent connections; one more is accepted and closed at once.
MAX_CONNECTIONS = 64
#: Concurrent connections of one uid; one more is accepted and closed at once.
MAX_CONNECTIONS_PER_UID = 8
#: Requests answered for one connection before the loop turns to the others.
MAX_REQUESTS_PER_TURN = 32
#: A connection holding part of a frame for longer than this is closed.
PARTIAL_FRAME_TIMEOUT = 10.0
#: Stop answering (and reading) a connection's requests while this many reply bytes wait for
#: it to read; with one reply at most MAX_FRAME_BYTES, a connection never buffers more than
#: MAX_PENDING_OUTPUT + MAX_FRAME_BYTES of replies, plus one read of requests.
MAX_PENDING_OUTPUT = 2 * frames.MAX_FRAME_BYTES
RECV_BYTES = 256 * 1024

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class Peer:
    """Who is on the other end of a connection, as the kernel recorded it at connect time."""

    __slots__ = ("gid", "pid", "uid")

    def __init__(self, pid: int, uid: int, gid: int) -> None:
        self.pid = pid
        self.uid = uid
        self.gid = gid

    @classmethod
    def of(cls, sock: socket.socket) -> "Peer":
        """The peer credentials of a connected Unix socket (``SO_PEERCRED``)."""
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        return cls(*_UCRED.unpack(raw))

    @classmethod
    def this_process(cls) -> "Peer":
        """This process's own credentials: for a request dispatched without a connection."""
        return cls(os.getpid(), os.geteuid(), os.getegid())

    def __repr__(self) -> str:
        return f"Peer(pid={self.pid}, uid={self.uid}, gid={self.gid})"


#: A request handler: (request, who sent it) -> reply.
Handler = Callable[[Frame, Peer], Frame]


class _Connection:
    def __init__(self, sock: socket.socket, peer: Peer) -> None:
        self.sock = sock
        self.peer = peer
        self.decoder = FrameDecoder()
        self.output = bytearray()
        #: Requests decoded but not yet answered (while the client is not reading replies).
        self.backlog: deque[Frame] = deque()
        #: When the partial frame now buffered started arriving (None: no partial frame).
        self.partial_since: float | None = None

    @property
    def open(self) -> bool:
        return self.sock.fileno() >= 0


def ok(request: Frame, value: bytes = b"", flags: int = 0) -> Frame:
    """A success reply to ``request``."""
    return Frame(request.op, request.request_id, flags=flags, value=value)


class FrameServer:
    """Serve ``handlers`` (op code -> function(frame, peer) -> reply) on a Unix socket.

    ``mode`` is the socket's permission bits (owner-only by default; statefsd adds its
    clients' group). ``on_refused`` is called with the peer of a connection closed because its
    uid already holds ``MAX_CONNECTIONS_PER_UID``.
    """

    def __init__(
        self,
        socket_path: str,
        handlers: dict[int, Handler],
        *,
        name: str,
        mode: int = 0o600,
        on_refused: Callable[[Peer], None] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.handlers = handlers
        self.name = name
        self.mode = mode
        self.on_refused = on_refused
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._connections: dict[int, _Connection] = {}
        self._stop = False
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._per_uid: dict[int, int] = {}
        self.counters = {
            "connections": 0,
            "frames": 0,
            "errors": 0,
            "protocol_errors": 0,
            "refused_connections": 0,
        }

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def listen(self) -> None:
        """Bind the socket (created owner-only, then given ``mode``) and start listening."""
        try:
            if stat.S_ISSOCK(os.lstat(self.socket_path).st_mode):
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o077)
        try:
            listener.bind(self.socket_path)
        except OSError:
            listener.close()
            raise
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, self.mode)
        listener.listen(MAX_CONNECTIONS)
        listener.setblocking(False)
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")

    def request_stop(self, *_args: object) -> None:
        """Ask the loop to stop (safe from a signal handler and from another thread)."""
        self._stop = True
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def serve_forever(self) -> None:
        while not self._stop:
            self.serve_once(timeout=1.0)
        self.close()

    def serve_once(self, timeout: float | None = 0.0) -> None:
        """One round of the selector loop."""
        for key, events in self._started_selector().select(timeout):
            if key.data is None:
                self._accept()
            elif key.data == "wake":
                try:
                    if self._wake_r is not None:
                        self._wake_r.recv(64)
                except BlockingIOError:
                    pass
            else:
                conn = key.data
                if events & selectors.EVENT_READ:
                    self._on_readable(conn)
                if events & selectors.EVENT_WRITE and conn.open:
                    self._on_writable(conn)
        self._expire_partial_frames()

    def close(self) -> None:
        """Close every connection and the socket, and remove the socket file. Idempotent."""
        for conn in list(self._connections.values()):
            self._close(conn)
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._listener = self._wake_r = self._wake_w = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass

    # -- connections -------------------------------------------------------------------------

    def _started_selector(self) -> selectors.BaseSelector:
        if self._selector is None:
            raise OSError(errno.EBADF, f"{self.name}: the server is not listening")
        return self._selector

    def _accept(self) -> None:
        if self._listener is None:
            return
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(self._connections) >= MAX_CONNECTIONS:
            sock.close()
            self.counters["refused_connections"] += 1
            return
        try:
            peer = Peer.of(sock)
        except OSError:
            sock.close()
            return
        if self._per_uid.get(peer.uid, 0) >= MAX_CONNECTIONS_PER_UID:
            sock.close()
            self.counters["refused_connections"] += 1
            if self.on_refused is not None:
                self.on_refused(peer)
            return
        sock.setblocking(False)
        conn = _Connection(sock, peer)
        self._per_uid[peer.uid] = self._per_uid.get(peer.uid, 0) + 1
        self._connections[sock.fileno()] = conn
        self._started_selector().register(sock, selectors.EVENT_READ, conn)
        self.counters["connections"] += 1

    def _on_readable(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        try:
            requests = conn.decoder.feed(data)
        except ProtocolError as exc:
            self.counters["protocol_errors"] += 1
            reply = Frame(0, 0, status=exc.errno, value=str(exc).encode("utf-8"))
            try:
                conn.sock.send(bytes(conn.output) + reply.encode())
            except OSError:
                pass
            self._close(conn)
            return
        conn.backlog.extend(requests)
        if not conn.decoder.buffered:
            conn.partial_since = None
        elif requests or conn.partial_since is None:
            # A new partial frame began in this read; trickling more bytes of it does not
            # restart its clock.
            conn.partial_since = time.monotonic()
        self._answer_backlog(conn)
        self._update_interest(conn)

    def _answer_backlog(self, conn: _Connection) -> None:
        """Answer queued requests while the client's unread replies stay under the bound, at
        most MAX_REQUESTS_PER_TURN now (the rest when its replies have been sent)."""
        for _ in range(MAX_REQUESTS_PER_TURN):
            if not conn.backlog or len(conn.output) >= MAX_PENDING_OUTPUT:
                return
            conn.output += self._reply(conn.backlog.popleft(), conn.peer)

    def _on_writable(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.output)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        del conn.output[:sent]
        self._answer_backlog(conn)
        self._update_interest(conn)

    def _update_interest(self, conn: _Connection) -> None:
        if not conn.open:
            return
        events = 0
        if not conn.backlog and len(conn.output) < MAX_PENDING_OUTPUT:
            events |= selectors.EVENT_READ
        if conn.output:
            events |= selectors.EVENT_WRITE
        self._started_selector().modify(conn.sock, events, conn)

    def _close(self, conn: _Connection) -> None:
        if conn.open and self._connections.pop(conn.sock.fileno(), None) is not None:
            left = self._per_uid.get(conn.peer.uid, 1) - 1
            if left:
                self._per_uid[conn.peer.uid] = left
            else:
                self._per_uid.pop(conn.peer.uid, None)
            try:
                self._started_selector().unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.sock.close()

    def _expire_partial_frames(self) -> None:
        now = time.monotonic()
        for conn in list(self._connections.values()):
            if conn.partial_since is not None and now - conn.partial_since > PARTIAL_FRAME_TIMEOUT:
                self._close(conn)

    # -- requests ----------------------------------------------------------------------------

    def _reply(self, request: Frame, peer: Peer) -> bytes:
        reply = self.dispatch(request, peer)
        try:
            return reply.encode()
        except ProtocolError as exc:
            self.counters["errors"] += 1
            return frames.error_frame(request, exc.errno, f"reply too large: {exc}").encode()

    def dispatch(self, request: Frame, peer: Peer | None = None) -> Frame:
        """Answer one request from ``peer`` (default: this process itself); never raises."""
        self.counters["frames"] += 1
        handler = self.handlers.get(request.op)
        if handler is None:
            self.counters["errors"] += 1
            return frames.error_frame(request, errno.ENOSYS, f"unknown operation {request.op}")
        if request.status:
            self.counters["errors"] += 1
            return frames.error_frame(request, errno.EINVAL, "requests carry status 0")
        try:
            return handler(request, peer or Peer.this_process())
        except ProtocolError as exc:
            self.counters["errors"] += 1
            return frames.error_frame(request, exc.errno, str(exc))
        except OSError as exc:
            self.counters["errors"] += 1
            return frames.error_frame(request, exc.errno or errno.EIO, exc.strerror or str(exc))
        except Exception as exc:  # noqa: BLE001 - a handler bug must not stop the server
            self.counters["errors"] += 1
            emit(f"{self.name}: internal error in {request.op_name}: {exc!r}")
            emit_traceback()
            return frames.error_frame(request, errno.EIO, f"internal error: {exc!r}")
