"""The lifecycle against real QEMU without a guest (``-machine none``): fast, no image."""

import os
import signal
from pathlib import Path

import pytest
from harness_helpers import pid_gone, requires_qemu_binary

from harness.deadline import Deadline
from harness.errors import LaunchError
from harness.vm.config import MachineConfig
from harness.vm.machine import Machine, MachineState

pytestmark = requires_qemu_binary

NONE = MachineConfig(machine="none")


def test_real_qemu_lifecycle_and_qmp(runs_dir: Path):
    machine = Machine(NONE, name="none", artifacts_root=runs_dir)
    with machine:
        assert machine.state is MachineState.RUNNING
        assert machine.qmp.greeting is not None
        assert machine.qmp.greeting["QMP"]["version"]["qemu"]["major"] >= 7
        machine.qmp.stop()
        assert machine.qmp.query_status()["status"] == "paused"
        machine.qmp.cont()
        pid = machine.pid
    assert pid_gone(pid)
    assert machine.exit_info is not None
    assert (machine.exit_info.how, machine.exit_info.reason) == ("quit", "host-qmp-quit")


def test_system_reset_resets_or_ends_qemu_under_no_reboot(runs_dir: Path):
    with Machine(NONE.replace(no_reboot=False), artifacts_root=runs_dir) as machine:
        since = len(machine.qmp.events)
        machine.qmp.system_reset()
        assert machine.qmp.wait_event("RESET", Deadline(5), since=since)["event"] == "RESET"
        assert machine.is_running()
    # With -no-reboot (the default: one boot per process) a reset ends QEMU instead.
    machine = Machine(NONE, artifacts_root=runs_dir).launch()
    machine.qmp.system_reset()
    info = machine.wait(Deadline(10))
    assert (info.how, info.reason) == ("exited", "host-qmp-system-reset")


def test_real_qemu_launch_error_carries_its_stderr(runs_dir: Path):
    config = NONE.replace(extra_args=("-device", "no-such-device"))
    with pytest.raises(LaunchError) as caught:
        Machine(config, artifacts_root=runs_dir).launch()
    assert caught.value.returncode == 1
    assert "no-such-device" in caught.value.stderr
    assert "-device no-such-device" in str(caught.value)


def test_real_qemu_sigterm_and_power_cut(runs_dir: Path):
    with Machine(NONE, artifacts_root=runs_dir) as machine:
        info = machine.power_cut()
    assert info.returncode == -signal.SIGKILL
    term = Machine(NONE, artifacts_root=runs_dir).launch()
    term._kill_group(signal.SIGTERM)
    info = term.wait(Deadline(10))
    assert info.reason == "host-signal"  # QEMU reports SIGTERM as a host-signal shutdown


def test_saved_qemu_argv_runs_by_hand_after_the_vm_is_gone(runs_dir: Path, tmp_path: Path):
    """``qemu.argv`` is for pasting into a shell: after the harness's private socket directory
    is gone it must still start QEMU (console on stdio, QMP on ./qmp.sock)."""
    import subprocess
    import time

    with Machine(NONE, name="none", artifacts_root=runs_dir) as machine:
        private = machine._sockets.directory if machine._sockets else None
    assert private is not None
    assert not private.exists()
    script = machine.artifacts.qemu_argv.read_text()
    assert str(private) not in script
    by_hand = subprocess.Popen(
        ["sh", "-c", script],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "qmp.sock").exists() and by_hand.poll() is None:
            assert time.monotonic() < deadline, "QEMU did not create ./qmp.sock"
            time.sleep(0.05)
        assert by_hand.poll() is None, by_hand.stderr.read() if by_hand.stderr else ""
    finally:
        os.killpg(by_hand.pid, signal.SIGKILL)  # sh and the QEMU it started
        by_hand.wait()
