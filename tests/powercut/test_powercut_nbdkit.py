"""The plugin under real nbdkit, driven over NBD by qemu-io (no VM): what reaches the backing
file when, FUA as a flush, the refusal to start, and that no nbdkit outlives its server."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from powercut_helpers import pattern

from harness import process
from harness.powercut import server as server_module
from harness.powercut.errors import DiskServerError, UnresolvedCache
from harness.powercut.fates import resolve
from harness.powercut.journal import JOURNAL_NAME, read_journal
from harness.powercut.server import DiskServer, ServerState

pytestmark = pytest.mark.skipif(
    shutil.which("nbdkit") is None or shutil.which("qemu-io") is None,
    reason="needs nbdkit (+ nbdkit-plugin-python) and qemu-io (qemu-utils)",
)


def qemu_io(server: DiskServer, *commands: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run qemu-io commands against the server (write-back cache: no FUA unless asked)."""
    argv = ["qemu-io", "-t", "writeback", "-f", "raw"]
    for command in commands:
        argv += ["-c", command]
    argv.append(f"nbd+unix:///?socket={server.socket_path}")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"qemu-io {commands}: {result.returncode}\n{result.stdout}")
    return result


def pid_gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture
def server(backing: Path, state_dir: Path, tmp_path: Path):
    disk = DiskServer(backing, state_dir, log_path=tmp_path / "nbdkit.log")
    with disk:
        yield disk


def test_an_unflushed_write_is_read_back_but_stays_in_the_cache(server, backing, state_dir):
    original = backing.read_bytes()
    # sigraise 9: qemu-io dies without closing the image, so it sends no flush on exit.
    result = qemu_io(
        server, "write -P 0xab 4096 4096", "read -P 0xab 4096 4096", "sigraise 9", check=False
    )
    assert result.returncode == -9, result.stdout
    assert "Pattern verification failed" not in result.stdout
    server.freeze()
    server.kill()
    assert backing.read_bytes() == original
    journal = read_journal(state_dir / JOURNAL_NAME)
    assert [(w.offset, w.data) for w in journal.writes] == [(4096, pattern(0xAB, 4096))]
    resolution = resolve(state_dir, backing, random.Random(0), kinds=("drop",))
    assert (resolution.pending, resolution.plan.kind) == (1, "drop")
    assert backing.read_bytes() == original


def test_a_flush_makes_writes_durable(server, backing, read_backing, state_dir):
    qemu_io(server, "write -P 0xcd 0 1024", "flush", "sigraise 9", check=False)
    server.kill()
    assert read_backing(0, 1024) == pattern(0xCD, 1024)
    assert read_journal(state_dir / JOURNAL_NAME).writes == ()


def test_a_fua_write_is_a_flush(server, read_backing):
    qemu_io(server, "write -f -P 0xef 8192 512", "sigraise 9", check=False)
    server.kill()
    assert read_backing(8192, 512) == pattern(0xEF, 512)


def test_the_server_refuses_an_unresolved_cut(backing, state_dir, tmp_path):
    (state_dir / JOURNAL_NAME).write_bytes(b"left over")
    with pytest.raises(UnresolvedCache):
        DiskServer(backing, state_dir, log_path=tmp_path / "nbdkit.log").start()


def test_the_plugin_itself_refuses_an_unresolved_cut(backing, state_dir, tmp_path, monkeypatch):
    (state_dir / JOURNAL_NAME).write_bytes(b"left over")
    monkeypatch.setattr(server_module, "require_resolved", lambda _path: None)
    disk = DiskServer(backing, state_dir, log_path=tmp_path / "nbdkit.log")
    with pytest.raises(DiskServerError, match="exited with code") as caught:
        disk.start()
    assert "resolve the power cut first" in caught.value.evidence
    assert disk.state is ServerState.STOPPED


def test_no_nbdkit_outlives_its_server(backing, state_dir, tmp_path):
    disk = DiskServer(backing, state_dir, log_path=tmp_path / "nbdkit.log")
    with pytest.raises(RuntimeError, match="boom"), disk:
        pid = disk.pid
        socket = disk.socket_path
        assert socket.exists()
        disk.freeze()
        raise RuntimeError("boom")
    assert pid is not None
    assert pid_gone(pid)
    assert not socket.exists()  # nbdkit leaves it behind; the server removes it
    assert not socket.parent.exists()
    assert disk.state is ServerState.STOPPED
    resolve(state_dir, backing, random.Random(0))
    with DiskServer(backing, state_dir, log_path=tmp_path / "nbdkit.log") as again:
        qemu_io(again, "read 0 512")
        second = again.pid
    assert second is not None
    assert pid_gone(second)


def test_the_atexit_hook_kills_live_servers(backing, state_dir, tmp_path):
    disk = DiskServer(backing, state_dir, log_path=tmp_path / "nbdkit.log").start()
    pid = disk.pid
    assert pid is not None
    assert process.kill_all_live() == [pid]
    assert pid_gone(pid)
    assert disk.state is ServerState.STOPPED
