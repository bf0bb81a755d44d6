"""Host-side security of statefsd: who may connect, and keys and values are never paths.

* The socket is its owner's and its group's only (0660; in the VM the group is statefsd's
  clients'), so another user cannot even connect: checked by connecting as ``nobody`` from a
  child process (root can set its uid; other users skip), with a control run on a 0666 socket
  proving the check can tell the difference. What users who may connect can do is the access
  policy's business (``test_robust_hostile.py``).
* A key is a name in the journal, never a host path, and a value is bytes, never a file name:
  hostile keys (traversal, absolute host paths, NUL tricks) and values (paths) go through every
  operation while an audit hook records every file-system event the daemon's thread causes, and
  a bait directory and the daemon's own directory are compared before and after. Nothing may
  be opened, listed, created or changed, and path-like values come back as the same bytes.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from guest.statefs import FileBlockDevice, StatefsError

from support.daemons import ThreadedStatefsd
from support.tally import Outcomes

NOBODY = 65534
CONNECT = (
    "import errno, socket, sys\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "try:\n"
    "    s.connect(sys.argv[1])\n"
    "except OSError as exc:\n"
    "    print(errno.errorcode.get(exc.errno, exc.errno))\n"
    "else:\n"
    "    print('CONNECTED')\n"
)


def _connect_as_nobody(path: Path) -> str:
    python = shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin")
    if python is None:
        pytest.skip("no system python3 that another user can run")
    proc = subprocess.run(
        [python, "-I", "-c", CONNECT, str(path)],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd="/",
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot run python3 as uid {NOBODY}: {proc.stderr.strip()[:200]}")
    return proc.stdout.strip()


@pytest.fixture
def open_dir():
    """A directory others may traverse (pytest's tmp_path is 0700, which alone would refuse
    them and prove nothing about the socket's own mode)."""
    path = Path(tempfile.mkdtemp(prefix="statefs-sec-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")
def test_another_uid_cannot_connect(open_dir):
    outcomes = Outcomes("Security", "statefsd socket (0660)", "connect as uid 65534 (nobody)")
    image = open_dir / "state.img"
    FileBlockDevice.create(image, 2 << 20).close()
    assert stat.S_IMODE(image.stat().st_mode) == 0o600, "the image must be owner-only too"
    daemon = ThreadedStatefsd(lambda: FileBlockDevice(image), open_dir / "statefsd.sock")
    try:
        sock = Path(daemon.socket_path)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        assert _connect_as_nobody(sock) == "EACCES"
        outcomes.count("EACCES (refused by the socket's mode)")
        sock.chmod(0o666)  # control: the same child connects once the mode allows it
        assert _connect_as_nobody(sock) == "CONNECTED"
        sock.chmod(0o660)
        with daemon.client() as client:
            client.hello()
    finally:
        daemon.stop()
    outcomes.note("control run on a 0666 socket connects, so the refusal is the mode's")
    outcomes.commit()


# -- keys and values are never host paths ------------------------------------------------------

_EVENTS: list[tuple[str, str]] = []
_WATCH: dict[str, int | None] = {"thread": None}
_FS_EVENTS = ("open", "os.", "shutil.", "pathlib.", "glob.", "io.open")


def _audit(event: str, args: tuple) -> None:
    """Record file-system events raised by the watched (daemon) thread. Installed once per
    process (audit hooks cannot be removed) and idle unless a thread is being watched."""
    if _WATCH["thread"] is None or threading.get_ident() != _WATCH["thread"]:
        return
    if event.startswith(_FS_EVENTS):
        _EVENTS.append((event, repr(args)[:200]))


_HOOKED = False


def _install_audit_hook() -> None:
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True


def _tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Mode, mtime and contents of everything under ``root`` (the image is written by the
    store, as it should be: only its name and mode are compared)."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.suffix == ".img":
            found[str(path.relative_to(root))] = (info.st_mode, 0, b"")
            continue
        content = path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, content)
    return found


def _hostile_keys(bait: Path) -> list[str]:
    return [
        "/state/../../etc/passwd",
        "/state/../" + str(bait).lstrip("/") + "/passwd",
        "/etc/passwd",
        str(bait / "passwd"),
        "../../../../etc/passwd",
        "/state/./passwd",
        "/state/\x00/etc/passwd",
        "/state/passwd\x00.txt",
        "file:///etc/passwd",
        "~root/.ssh/authorized_keys",
        "/state/" + "../" * 40 + "etc/shadow",
    ]


def _pathlike_keys(bait: Path) -> list[str]:
    """Keys that are valid and look like host paths: stored as names, nothing else."""
    return [
        "/state/etc/passwd",
        "/state" + str(bait / "passwd"),
        "/state/%2e%2e/%2e%2e/etc/passwd",
        "/state/..../etc",
        "/state/proc/self/environ",
        "/state/dev/vda",
    ]


def test_keys_and_values_never_touch_the_host_file_system(tmp_path):
    _install_audit_hook()
    bait = tmp_path / "bait"
    bait.mkdir()
    (bait / "passwd").write_bytes(b"root:x:0:0:bait\n")
    image = tmp_path / "state.img"
    FileBlockDevice.create(image, 2 << 20).close()
    daemon = ThreadedStatefsd(lambda: FileBlockDevice(image), tmp_path / "statefsd.sock")
    outcomes = Outcomes(
        "Security",
        "statefsd keys and values as host paths",
        "traversal / absolute / NUL / URL keys and path values, through put/get/delete/list/batch",
    )
    values = [
        b"/etc/passwd",
        str(bait / "passwd").encode(),
        b"../../../etc/shadow",
        b"\x00/etc/passwd",
        b"file:///etc/passwd",
    ]
    before = _tree(tmp_path)
    try:
        with daemon.client() as client:
            client.hello()
            _WATCH["thread"] = daemon.thread.ident
            for key in _hostile_keys(bait):
                for call in (
                    lambda k=key: client.put(k, values[0], sync=True),
                    lambda k=key: client.get(k),
                    lambda k=key: client.delete(k),
                    lambda k=key: client.list(k),
                    lambda k=key: client.batch([("/state/ok", b"1"), (k, values[1])]),
                ):
                    with pytest.raises(StatefsError) as info:
                        call()
                    assert info.value.errno in (errno.EINVAL, errno.ENAMETOOLONG), info.value
                    outcomes.count(f"refused ({errno.errorcode[info.value.errno]})")
            for key in _pathlike_keys(bait):
                for value in values:
                    client.put(key, value, sync=True)
                    assert client.get(key) == value, "a value was dereferenced"
                    outcomes.count("stored and returned as the same bytes")
                assert client.list(key) == [key]
                client.delete(key, sync=True)
                with pytest.raises(StatefsError) as info:
                    client.get(key)
                assert info.value.errno == errno.ENOENT, "a key was read from the host"
            assert client.list() == []
            _WATCH["thread"] = None
    finally:
        _WATCH["thread"] = None
        daemon.stop()
    assert not _EVENTS, f"the daemon touched the file system: {_EVENTS[:5]}"
    after = _tree(tmp_path)
    after.pop("statefsd.sock", None)
    before.pop("statefsd.sock", None)
    assert after == before, "files in or beside the daemon's directory changed"
    outcomes.note("audit hook: 0 file-system events from the daemon thread; bait dir unchanged")
    outcomes.commit()


def test_the_audit_hook_sees_the_daemon_open_a_file(tmp_path):
    """The check above is only a check if the hook records a real open by the daemon thread:
    REOPEN opens the image, which must show up."""
    _install_audit_hook()
    image = tmp_path / "state.img"
    FileBlockDevice.create(image, 2 << 20).close()
    daemon = ThreadedStatefsd(lambda: FileBlockDevice(image), tmp_path / "s.sock")
    _EVENTS.clear()
    try:
        with daemon.client() as client:
            _WATCH["thread"] = daemon.thread.ident
            client.reopen()
            _WATCH["thread"] = None
    finally:
        _WATCH["thread"] = None
        daemon.stop()
    seen = list(_EVENTS)
    _EVENTS.clear()
    assert any(event == "open" and "state.img" in args for event, args in seen), seen
