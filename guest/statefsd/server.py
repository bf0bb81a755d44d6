"""statefsd: the one process that owns the block device and serves ``/state`` over a socket.

A single-threaded selector loop: every connection is non-blocking with its own incremental
decoder and output buffer, so a client that sends half a frame and stalls, or never reads its
replies, cannot block the others. Requests are handled one at a time, so a BATCH (apply and
sync) can never interleave with another client's operations.

Bad input never stops the daemon: an undecodable header gets an error reply (when a reply is
possible) and that connection is closed; a request the store rejects gets an error reply with
the store's errno. A bug in a handler is reported on the console with its traceback (the
harness treats that as a failure) and answered with EIO; the daemon keeps serving.
"""

import errno
import json
import os
import selectors
import signal
import socket
import stat
import time
import traceback
from collections.abc import Callable

from guest.console import emit
from guest.statefs.blockdev import BlockDevice
from guest.statefs.errors import StatefsError
from guest.statefs.store import Store, StoreConfig
from guest.statefsd import protocol
from guest.statefsd.protocol import Frame, FrameDecoder, ProtocolError

#: Concurrent connections; one more is accepted and closed at once.
MAX_CONNECTIONS = 64
#: A connection holding part of a frame for longer than this is closed.
PARTIAL_FRAME_TIMEOUT = 10.0
#: Stop reading a connection's requests while this many reply bytes wait for it to read.
MAX_PENDING_OUTPUT = 2 * protocol.MAX_FRAME_BYTES
RECV_BYTES = 256 * 1024


class _Connection:
    def __init__(self, sock: socket.socket, number: int) -> None:
        self.sock = sock
        self.number = number
        self.decoder = FrameDecoder()
        self.output = bytearray()
        self.partial_since: float | None = None


class StatefsServer:
    """Serve a store on a Unix socket until :meth:`request_stop` (or SIGTERM) is called.

    ``open_device`` returns a fresh block device each time it is called; the server calls it at
    start and for every REOPEN, so a reopen really closes and re-opens the device.
    """

    def __init__(
        self,
        open_device: Callable[[], BlockDevice],
        socket_path: str,
        *,
        config: StoreConfig | None = None,
        name: str = "statefsd",
    ) -> None:
        self._open_device = open_device
        self.socket_path = socket_path
        self._config = config or StoreConfig()
        self.name = name
        self.store: Store | None = None
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._connections: dict[int, _Connection] = {}
        self._stop = False
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._next_number = 0
        self.counters = {"connections": 0, "frames": 0, "errors": 0, "protocol_errors": 0}

    # -- lifecycle ---------------------------------------------------------------------------

    def open_store(self) -> bool:
        """Open (or, on a device holding no store, format) the store; True if formatted."""
        dev = self._open_device()
        try:
            dev.invalidate_cache()
            store, formatted = Store.open_or_format(dev, self._config)
        except BaseException:
            dev.close()
            raise
        self.store = store
        return formatted

    def listen(self) -> None:
        """Bind the owner-only socket. Only after this do requests get answered."""
        try:
            if stat.S_ISSOCK(os.lstat(self.socket_path).st_mode):
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o077)
        try:
            listener.bind(self.socket_path)
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
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
        """Ask the loop to stop (safe from a signal handler)."""
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
        self.shutdown()

    def serve_once(self, timeout: float | None = 0.0) -> None:
        """One round of the selector loop (tests drive the server with this)."""
        for key, events in self._selector.select(timeout):
            if key.data is None:
                self._accept()
            elif key.data == "wake":
                try:
                    self._wake_r.recv(64)
                except BlockingIOError:
                    pass
            else:
                conn = key.data
                if events & selectors.EVENT_READ:
                    self._on_readable(conn)
                if events & selectors.EVENT_WRITE and conn.sock.fileno() >= 0:
                    self._on_writable(conn)
        self._expire_partial_frames()

    def shutdown(self) -> None:
        """Close every connection, sync and close the store, remove the socket. Idempotent."""
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
        if self.store is not None:
            store, self.store = self.store, None
            store.close()

    # -- connections -------------------------------------------------------------------------

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(self._connections) >= MAX_CONNECTIONS:
            sock.close()
            return
        sock.setblocking(False)
        self._next_number += 1
        conn = _Connection(sock, self._next_number)
        self._connections[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)
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
            frames = conn.decoder.feed(data)
        except ProtocolError as exc:
            self.counters["protocol_errors"] += 1
            reply = Frame(0, 0, status=exc.errno, value=str(exc).encode("utf-8"))
            conn.output += reply.encode()
            self._flush_then_close(conn)
            return
        for frame in frames:
            conn.output += self._reply(frame)
        conn.partial_since = time.monotonic() if conn.decoder.buffered else None
        self._update_interest(conn)

    def _on_writable(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.output)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        del conn.output[:sent]
        self._update_interest(conn)

    def _update_interest(self, conn: _Connection) -> None:
        if conn.sock.fileno() < 0:
            return
        events = 0
        if len(conn.output) < MAX_PENDING_OUTPUT:
            events |= selectors.EVENT_READ
        if conn.output:
            events |= selectors.EVENT_WRITE
        self._selector.modify(conn.sock, events, conn)

    def _flush_then_close(self, conn: _Connection) -> None:
        """Best effort: send what is queued (an error reply) without blocking, then close."""
        try:
            conn.sock.send(conn.output)
        except OSError:
            pass
        self._close(conn)

    def _close(self, conn: _Connection) -> None:
        fileno = conn.sock.fileno()
        if fileno >= 0 and self._connections.pop(fileno, None) is not None:
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.sock.close()

    def _expire_partial_frames(self) -> None:
        now = time.monotonic()
        for conn in list(self._connections.values()):
            if conn.partial_since is not None and now - conn.partial_since > PARTIAL_FRAME_TIMEOUT:
                self._close(conn)

    # -- requests ----------------------------------------------------------------------------

    def _reply(self, frame: Frame) -> bytes:
        reply = self._dispatch(frame)
        try:
            return reply.encode()
        except ProtocolError as exc:
            self.counters["errors"] += 1
            return protocol.error_frame(frame, exc.errno, f"reply too large: {exc}").encode()

    def _dispatch(self, frame: Frame) -> Frame:
        self.counters["frames"] += 1
        handler = _HANDLERS.get(frame.op)
        if handler is None:
            self.counters["errors"] += 1
            return protocol.error_frame(frame, errno.ENOSYS, f"unknown operation {frame.op}")
        if frame.status:
            self.counters["errors"] += 1
            return protocol.error_frame(frame, errno.EINVAL, "requests carry status 0")
        try:
            if self.store is None and frame.op != protocol.OP_HELLO:
                raise StatefsError(errno.EIO, "store is not open (a reopen failed)")
            return handler(self, frame)
        except (StatefsError, ProtocolError) as exc:
            self.counters["errors"] += 1
            message = exc.strerror if isinstance(exc, StatefsError) else str(exc)
            return protocol.error_frame(frame, exc.errno, message)
        except Exception as exc:  # noqa: BLE001 - a handler bug must not stop the daemon
            self.counters["errors"] += 1
            emit(f"{self.name}: internal error in {frame.op_name}: {exc!r}")
            for line in traceback.format_exc().splitlines():
                emit(line)
            return protocol.error_frame(frame, errno.EIO, f"internal error: {exc!r}")

    def _ok(self, frame: Frame, value: bytes = b"", flags: int = 0) -> Frame:
        return Frame(frame.op, frame.request_id, flags=flags, value=value)

    def _json(self, frame: Frame, payload: dict) -> Frame:
        return self._ok(frame, json.dumps(payload, sort_keys=True).encode("utf-8"))

    def _hello(self, frame: Frame) -> Frame:
        info = {"server": self.name, "protocol": protocol.PROTOCOL_VERSION}
        if self.store is not None:
            info.update(self.store.stats())
        return self._json(frame, info)

    def _put(self, frame: Frame) -> Frame:
        self.store.put(frame.key, frame.value)
        if frame.flags & protocol.FLAG_SYNC:
            self.store.sync()
        return self._ok(frame)

    def _get(self, frame: Frame) -> Frame:
        return self._ok(frame, self.store.get(frame.key))

    def _delete(self, frame: Frame) -> Frame:
        self.store.delete(frame.key)
        if frame.flags & protocol.FLAG_SYNC:
            self.store.sync()
        return self._ok(frame)

    def _list(self, frame: Frame) -> Frame:
        cursor = frame.value.decode("utf-8", "replace")
        keys = [key for key in self.store.list(frame.key or b"/state") if key > cursor]
        page, size = [], 0
        for key in keys:
            size += len(key.encode("utf-8")) + 1
            if size > protocol.MAX_FRAME_VALUE_BYTES:
                break
            page.append(key)
        more = protocol.FLAG_MORE if len(page) < len(keys) else 0
        return self._ok(frame, "\n".join(page).encode("utf-8"), flags=more)

    def _sync(self, frame: Frame) -> Frame:
        self.store.sync()
        return self._ok(frame)

    def _batch(self, frame: Frame) -> Frame:
        self.store.write_batch(protocol.decode_batch(frame.value))
        self.store.sync()
        return self._ok(frame)

    def _reopen(self, frame: Frame) -> Frame:
        """Drop the in-memory state (unsynced changes are lost, as in a crash), close the
        device, open it again, replay."""
        discarded = self.store.pending_ops
        store, self.store = self.store, None
        store.close(sync=False)
        self.open_store()
        stats = self.store.stats()
        stats["discarded_pending_ops"] = discarded
        return self._json(frame, stats)

    def _stats(self, frame: Frame) -> Frame:
        stats = self.store.stats()
        stats.update({f"server_{name}": value for name, value in self.counters.items()})
        stats["server_open_connections"] = len(self._connections)
        return self._json(frame, stats)

    def _fsck(self, frame: Frame) -> Frame:
        report = self.store.fsck()
        return self._json(
            frame, {"ok": report.ok, "lines": report.lines(), "live_keys": report.live_keys}
        )


_HANDLERS = {
    protocol.OP_HELLO: StatefsServer._hello,
    protocol.OP_PUT: StatefsServer._put,
    protocol.OP_GET: StatefsServer._get,
    protocol.OP_DELETE: StatefsServer._delete,
    protocol.OP_LIST: StatefsServer._list,
    protocol.OP_SYNC: StatefsServer._sync,
    protocol.OP_BATCH: StatefsServer._batch,
    protocol.OP_REOPEN: StatefsServer._reopen,
    protocol.OP_STATS: StatefsServer._stats,
    protocol.OP_FSCK: StatefsServer._fsck,
}


def run_daemon(
    device_path: str,
    socket_path: str,
    *,
    open_device: Callable[[], BlockDevice] | None = None,
    on_ready: Callable[[], None] | None = None,
    config: StoreConfig | None = None,
) -> int:
    """statefsd's main: open or format the store, listen, serve until SIGTERM. Exit code."""
    from guest.statefs.blockdev import open_block_device

    opener = open_device or (lambda: open_block_device(device_path))
    server = StatefsServer(opener, socket_path, config=config)
    try:
        formatted = server.open_store()
    except (StatefsError, OSError) as exc:
        code = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else "EIO"
        emit(f"statefsd: fatal {code} opening {device_path}: {exc.strerror or exc}")
        return 1
    store = server.store
    if formatted:
        emit(f"statefsd: formatted {device_path} (it held no store)")
    else:
        replay = store.replay
        emit(
            f"statefsd: replayed {replay.records} records, {len(store)} keys "
            f"in {store.stats()['replay_ms']:.1f} ms (tail: {replay.tail_reason}"
            f"{', sealed' if store.counters['seals'] else ''})"
        )
    try:
        server.listen()
    except OSError as exc:
        emit(f"statefsd: fatal cannot listen on {socket_path}: {exc}")
        server.shutdown()
        return 1
    server.install_signal_handlers()
    emit("statefsd: ready")
    if on_ready is not None:
        on_ready()
    server.serve_forever()
    emit("statefsd: stopped")
    return 0
