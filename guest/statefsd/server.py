"""statefsd: the one process that owns the block device and serves ``/state``.

The store's operations are handlers on a :class:`~guest.ipc.server.FrameServer`; the server
answers one request at a time, so a BATCH (apply, then sync) never interleaves with another
client's operations. The store's errors are ``OSError`` subclasses with an errno, which the
frame server turns into error replies.

Every request is checked against the access policy (:mod:`guest.statefsd.policy`) by the uid
of its connection before the store sees it; a denied request changes nothing, gets EACCES and
is audited on the console (:mod:`guest.statefsd.audit`). Keys are normalized before the check,
so ``/state//keystore/x`` is judged as ``/state/keystore/x``.
"""

import errno
import json
from collections.abc import Callable

from guest.console import emit
from guest.ipc import frames
from guest.ipc.frames import Frame
from guest.ipc.server import FrameServer, Handler, Peer, ok
from guest.statefs.blockdev import BlockDevice
from guest.statefs.errors import StatefsError
from guest.statefs.layout import RECORD_HEADER_BYTES, round_up
from guest.statefs.paths import normalize_key, normalize_prefix
from guest.statefs.store import Store, StoreConfig
from guest.statefs.volume import layout_for
from guest.statefsd import protocol
from guest.statefsd.audit import DenialAudit
from guest.statefsd.policy import LIST, POLICY_PATH, READ, WRITE, Policy, PolicyError

#: statefsd's socket: its owner and its group (the clients' group, which the runtime directory
#: hands down) may connect, nobody else.
SOCKET_MODE = 0o660


def record_limit_for(dev: BlockDevice) -> int | None:
    """The record limit statefsd formats with: one largest BATCH frame, as one record (None:
    the store's default, on a device too small for that).

    Nothing larger can arrive in one request, and a smaller limit shrinks the window every
    open scans past the journal's end (4 MiB by default; this is 1 MiB + a sector), which
    costs ~17 ms per open under TCG. Puts that add up to more without a sync get ENOBUFS.
    """
    limit = round_up(RECORD_HEADER_BYTES + frames.MAX_FRAME_VALUE_BYTES, dev.sector_size)
    try:
        _, default = layout_for(dev)
    except StatefsError:
        return None  # too small for any store: format reports it
    return limit if limit < default else None


class StatefsServer:
    """The store plus its frame server.

    ``open_device`` returns a fresh block device each time it is called; the server calls it at
    start and for every REOPEN, so a reopen really closes and re-opens the device.

    ``policy`` decides who may do what; the daemon (:func:`run_daemon`) always loads one. None
    serves every request: for a server embedded in a test or tool that is the only user of its
    own device file.
    """

    def __init__(
        self,
        open_device: Callable[[], BlockDevice],
        socket_path: str,
        *,
        config: StoreConfig | None = None,
        name: str = "statefsd",
        policy: Policy | None = None,
        audit: DenialAudit | None = None,
    ) -> None:
        self._open_device = open_device
        self._config = config or StoreConfig()
        self.store: Store | None = None
        #: What a forced format overwrote ("" unless ``open_store(force_format=True)`` did).
        self.overwritten = ""
        self.policy = policy
        self.audit = audit or DenialAudit(name=name)
        handlers: dict[int, Handler] = {
            frames.OP_HELLO: self._hello,
            protocol.OP_PUT: self._put,
            protocol.OP_GET: self._get,
            protocol.OP_DELETE: self._delete,
            protocol.OP_LIST: self._list,
            protocol.OP_SYNC: self._sync,
            protocol.OP_BATCH: self._batch,
            protocol.OP_REOPEN: self._reopen,
            protocol.OP_STATS: self._stats,
            protocol.OP_FSCK: self._fsck,
        }
        self.frames = FrameServer(
            socket_path,
            handlers,
            name=name,
            mode=SOCKET_MODE,
            on_refused=lambda peer: self.audit.denial(peer.uid, "CONNECT", "-"),
        )

    @property
    def socket_path(self) -> str:
        return self.frames.socket_path

    def open_store(self, *, format_if_blank: bool = True, force_format: bool = False) -> bool:
        """Open the store (formatting a blank device, if allowed); True if formatted. REOPEN
        never formats: a store that vanished is an error, not a fresh start.

        A device that is not blank but holds no store (EMEDIUMTYPE: a partition table, a file
        system) is formatted over only with ``force_format`` (the ``sq.format=force`` kernel
        argument); what it held is then kept in ``overwritten``."""
        dev = self._open_device()
        try:
            dev.invalidate_cache()
            if format_if_blank:
                try:
                    store, formatted = Store.open_or_format(
                        dev, self._config, record_limit=record_limit_for(dev)
                    )
                except StatefsError as exc:
                    if exc.errno != errno.EMEDIUMTYPE or not force_format:
                        raise
                    store = Store.format(dev, self._config, record_limit=record_limit_for(dev))
                    formatted, self.overwritten = True, exc.strerror or str(exc)
            else:
                store, formatted = Store.open(dev, self._config), False
        except BaseException:
            dev.close()
            raise
        self.store = store
        return formatted

    def listen(self) -> None:
        self.frames.listen()

    def request_stop(self, *_args: object) -> None:
        self.frames.request_stop()

    def serve_forever(self) -> None:
        """Serve until stopped, then close the store (syncing what clients left pending)."""
        try:
            self.frames.serve_forever()
        finally:
            self.close_store()

    def close_store(self) -> None:
        if self.store is not None:
            store, self.store = self.store, None
            store.close()

    # -- access ------------------------------------------------------------------------------

    def _deny(self, peer: Peer, request: Frame, key: str) -> StatefsError:
        self.audit.denial(peer.uid, request.op_name, key)
        return StatefsError(errno.EACCES, f"uid {peer.uid} may not {request.op_name} {key}")

    def _check(self, peer: Peer, right: str, request: Frame, raw_key: bytes) -> None:
        """Raise EACCES (audited) unless ``peer`` has ``right`` on the key."""
        if self.policy is None:
            return
        key = normalize_key(raw_key)
        if not self.policy.allows(peer.uid, right, key):
            raise self._deny(peer, request, key)

    def _check_admin(self, peer: Peer, request: Frame) -> None:
        if self.policy is not None and not self.policy.allows_admin(
            peer.uid, request.op_name.lower()
        ):
            raise self._deny(peer, request, "-")

    # -- handlers ----------------------------------------------------------------------------

    def _require_store(self) -> Store:
        if self.store is None:
            raise StatefsError(errno.EIO, "store is not open (a reopen failed)")
        return self.store

    @staticmethod
    def _json(request: Frame, payload: dict) -> Frame:
        return ok(request, json.dumps(payload, sort_keys=True).encode("utf-8"))

    def _hello(self, request: Frame, peer: Peer) -> Frame:
        """Anyone connected may ask; the store's figures only with the STATS right."""
        info = {"server": self.frames.name, "protocol": frames.PROTOCOL_VERSION}
        may_see = self.policy is None or self.policy.allows_admin(peer.uid, "stats")
        if self.store is not None and may_see:
            info.update(self.store.stats())
        return self._json(request, info)

    def _put(self, request: Frame, peer: Peer) -> Frame:
        self._check(peer, WRITE, request, request.key)
        store = self._require_store()
        store.put(request.key, request.value)
        if request.flags & frames.FLAG_SYNC:
            store.sync()
        return ok(request)

    def _get(self, request: Frame, peer: Peer) -> Frame:
        self._check(peer, READ, request, request.key)
        return ok(request, self._require_store().get(request.key))

    def _delete(self, request: Frame, peer: Peer) -> Frame:
        self._check(peer, WRITE, request, request.key)
        store = self._require_store()
        store.delete(request.key)
        if request.flags & frames.FLAG_SYNC:
            store.sync()
        return ok(request)

    def _list(self, request: Frame, peer: Peer) -> Frame:
        """LIST needs the list right on the prefix; it shows only keys the caller may read."""
        cursor = request.value.decode("utf-8", "replace")
        if self.policy is not None:
            prefix = normalize_prefix(request.key or b"/state")
            if not self.policy.allows(peer.uid, LIST, prefix):
                raise self._deny(peer, request, prefix)
        keys = self._require_store().list(request.key or b"/state")
        if self.policy is not None:
            keys = [key for key in keys if self.policy.allows(peer.uid, READ, key)]
        keys = [key for key in keys if key > cursor]
        page, size = [], 0
        for key in keys:
            size += len(key.encode("utf-8")) + 1
            if size > frames.MAX_FRAME_VALUE_BYTES:
                break
            page.append(key)
        more = frames.FLAG_MORE if len(page) < len(keys) else 0
        return ok(request, "\n".join(page).encode("utf-8"), flags=more)

    def _sync(self, request: Frame, peer: Peer) -> Frame:
        """SYNC commits only writes, so it needs the write right somewhere."""
        if self.policy is not None and not self.policy.writes_anywhere(peer.uid):
            raise self._deny(peer, request, "-")
        self._require_store().sync()
        return ok(request)

    def _batch(self, request: Frame, peer: Peer) -> Frame:
        """Every key of the batch must be writable, or nothing of it is applied."""
        operations = protocol.decode_batch(request.value)
        for key, _ in operations:
            self._check(peer, WRITE, request, key)
        store = self._require_store()
        store.write_batch(operations)
        store.sync()
        return ok(request)

    def _reopen(self, request: Frame, peer: Peer) -> Frame:
        """Drop the in-memory state (unsynced changes are lost, as in a crash), close the
        device, open it again, replay."""
        self._check_admin(peer, request)
        discarded = 0
        if self.store is not None:  # None after a failed REOPEN: just try again
            store, self.store = self.store, None
            discarded = store.pending_ops
            store.close(sync=False)
        self.open_store(format_if_blank=False)
        stats = self._require_store().stats()
        stats["discarded_pending_ops"] = discarded
        return self._json(request, stats)

    def _stats(self, request: Frame, peer: Peer) -> Frame:
        self._check_admin(peer, request)
        stats = self._require_store().stats()
        stats.update({f"server_{name}": value for name, value in self.frames.counters.items()})
        stats["server_open_connections"] = self.frames.open_connections
        stats["server_denied"] = self.audit.denied
        stats["server_denied_unshown"] = self.audit.unshown
        return self._json(request, stats)

    def _fsck(self, request: Frame, peer: Peer) -> Frame:
        self._check_admin(peer, request)
        report = self._require_store().fsck()
        payload = {"ok": report.ok, "lines": report.lines(), "live_keys": report.live_keys}
        return self._json(request, payload)


def run_daemon(
    device_path: str,
    socket_path: str,
    *,
    open_device: Callable[[], BlockDevice] | None = None,
    on_ready: Callable[[], None] | None = None,
    config: StoreConfig | None = None,
    policy_path: str = POLICY_PATH,
    force_format: bool = False,
) -> int:
    """statefsd's main: load the policy, open or format the store, listen, serve until
    SIGTERM. Exit code.

    A disk that is neither blank nor a store ends it with one line, ``statefsd: fatal
    EMEDIUMTYPE opening DEVICE: ...`` saying what the disk holds, unless ``force_format``."""
    from guest.statefs.blockdev import open_block_device

    try:
        policy = Policy.load(policy_path)
    except OSError as exc:  # PolicyError (EINVAL, names the line) or the file's own error
        code = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else "EIO"
        detail = exc.strerror if isinstance(exc, PolicyError) else f"{policy_path}: {exc.strerror}"
        emit(f"statefsd: fatal {code} policy {detail}")
        return 1
    opener = open_device or (lambda: open_block_device(device_path))
    server = StatefsServer(opener, socket_path, config=config, policy=policy)
    try:
        formatted = server.open_store(force_format=force_format)
    except (StatefsError, OSError) as exc:
        code = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else "EIO"
        emit(f"statefsd: fatal {code} opening {device_path}: {exc.strerror or exc}")
        return 1
    store = server._require_store()
    if formatted and server.overwritten:
        emit(f"statefsd: formatted {device_path} over what it held (sq.format=force): "
             f"{server.overwritten}")  # fmt: skip
    elif formatted:
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
        server.close_store()
        return 1
    server.frames.install_signal_handlers()
    emit("statefsd: ready")
    if on_ready is not None:
        on_ready()
    server.serve_forever()
    emit("statefsd: stopped")
    return 0
