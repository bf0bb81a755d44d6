"""Machine lifecycle against a fake QEMU (tests/harness/fake_qemu.py): no QEMU needed."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from harness_helpers import pid_gone

from harness.deadline import Deadline
from harness.errors import ConfigError, DependencyMissing, LaunchError, MachineStateError
from harness.process import kill_all_live
from harness.vm.machine import Machine, MachineState


def test_launch_query_quit_and_every_state(fake_config, runs_dir: Path):
    machine = Machine(fake_config(console="hello\n"), name="vm", artifacts_root=runs_dir)
    states = [machine.state]
    with machine:
        states.append(machine.state)
        pid = machine.pid
        assert machine.qmp.query_status()["running"] is True
        machine.qmp.stop()
        assert machine.qmp.query_status()["status"] == "paused"
        machine.qmp.cont()
        since = len(machine.qmp.events)
        machine.qmp.system_reset()
        event = machine.qmp.wait_event("RESET", Deadline(5), since=since)
        assert event["data"]["reason"] == "host-qmp-system-reset"
        assert machine.console.expect("hello", Deadline(5))
    states.append(machine.state)
    assert states == [MachineState.IDLE, MachineState.RUNNING, MachineState.STOPPED]
    assert pid_gone(pid)
    assert machine.exit_info is not None
    assert machine.exit_info.how == "quit"
    assert machine.exit_info.reason == "host-qmp-quit"
    assert machine.exit_info.returncode == 0
    names = [
        json.loads(line)["msg"].get("event")
        for line in machine.artifacts.qmp_log.read_text().splitlines()
    ]
    assert {"STOP", "RESUME", "RESET", "SHUTDOWN"} <= set(names)
    assert machine.artifacts.uart_log.read_bytes() == b"hello\r\n"
    assert "-nodefaults" in machine.artifacts.qemu_argv.read_text()


def test_socket_dir_stays_short_under_a_long_tmpdir(
    fake_config, runs_dir: Path, tmp_path, monkeypatch
):
    long_tmp = tmp_path / ("x" * 100)
    long_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(long_tmp))
    monkeypatch.setattr("tempfile.tempdir", None)
    with Machine(fake_config(), artifacts_root=runs_dir) as machine:
        assert machine._sockets.directory is not None
        assert len(str(machine._sockets.directory / "serial.sock")) < 108
        assert machine.qmp.query_status()["running"]


def test_private_temp_dir_is_removed(fake_config, runs_dir: Path):
    with Machine(fake_config(), artifacts_root=runs_dir) as machine:
        tempdir = machine._sockets.directory
        assert tempdir is not None
        assert (tempdir / "qmp.sock").exists()
    assert not tempdir.exists()


def test_launch_failure_carries_argv_exit_code_and_stderr(fake_config, runs_dir: Path):
    machine = Machine(fake_config("exit-early"), artifacts_root=runs_dir)
    with pytest.raises(LaunchError) as caught:
        machine.launch()
    error = caught.value
    assert error.returncode == 1
    assert "Could not open '/nope'" in error.stderr
    assert error.argv[0].endswith("qemu-system-fake")
    assert "exit code: 1" in str(error)
    assert "command: " in str(error)
    assert machine.state is MachineState.STOPPED
    assert machine.exit_info is not None
    assert machine.exit_info.how == "launch-failed"


def test_launch_timeout_kills_qemu(fake_config, runs_dir: Path, tmp_path: Path):
    pidfile = tmp_path / "pid"
    machine = Machine(
        fake_config("hang", pidfile=str(pidfile)), artifacts_root=runs_dir, launch_timeout=0.5
    )
    started = time.monotonic()
    with pytest.raises(LaunchError, match="did not connect its serial console within 0.5 s"):
        machine.launch()
    assert time.monotonic() - started < 5
    assert pid_gone(int(pidfile.read_text()))


def test_stubborn_qemu_is_escalated_to_sigkill(fake_config, runs_dir: Path):
    machine = Machine(fake_config("stubborn"), artifacts_root=runs_dir).launch()
    pid = machine.pid
    info = machine.shutdown(quit_timeout=0.3, term_timeout=0.3)
    assert info is not None
    assert info.how == "sigkill"
    assert info.returncode == -signal.SIGKILL
    assert pid_gone(pid)


def test_an_exception_inside_with_leaves_no_qemu(fake_config, runs_dir: Path):
    pid = None
    with (
        pytest.raises(RuntimeError, match="test failed mid-boot"),
        Machine(fake_config(), artifacts_root=runs_dir) as machine,
    ):
        pid = machine.pid
        raise RuntimeError("test failed mid-boot")
    assert pid is not None
    assert pid_gone(pid)
    assert machine.state is MachineState.STOPPED


def test_keyboard_interrupt_inside_with_leaves_no_qemu(fake_config, runs_dir: Path):
    with (
        pytest.raises(KeyboardInterrupt),
        Machine(fake_config(), artifacts_root=runs_dir) as machine,
    ):
        pid = machine.pid
        raise KeyboardInterrupt
    assert pid_gone(pid)


def test_power_cut_is_immediate(fake_config, runs_dir: Path):
    with Machine(fake_config(), artifacts_root=runs_dir) as machine:
        pid = machine.pid
        started = time.monotonic()
        info = machine.power_cut()
        assert time.monotonic() - started < 2
    assert info.how == "power-cut"
    assert info.returncode == -signal.SIGKILL
    assert info.reason is None  # no SHUTDOWN event: nobody said goodbye
    assert pid_gone(pid)


def test_wait_for_guest_power_off(fake_config, runs_dir: Path):
    machine = Machine(fake_config("poweroff", console="bye"), artifacts_root=runs_dir).launch()
    info = machine.wait(Deadline(10))
    assert info.how == "exited"
    assert info.guest_powered_off
    assert machine.console.transcript.text() == "bye\r\n"


def test_wait_deadline_leaves_the_machine_running(fake_config, runs_dir: Path):
    from harness.errors import DeadlineExceeded

    with Machine(fake_config(), artifacts_root=runs_dir) as machine:
        with pytest.raises(DeadlineExceeded, match="waiting for the guest to power off"):
            machine.wait(Deadline(0.2, label="test"))
        assert machine.is_running()


def test_state_guard_names_method_and_state(fake_config, runs_dir: Path):
    machine = Machine(fake_config(), artifacts_root=runs_dir)
    with pytest.raises(MachineStateError, match=r"power_cut\(\) needs state RUNNING.*IDLE"):
        machine.power_cut()
    with pytest.raises(MachineStateError, match="next_boot"):
        machine.next_boot()
    machine.launch()
    with pytest.raises(MachineStateError, match=r"launch\(\) needs state IDLE"):
        machine.launch()
    machine.shutdown()
    assert machine.shutdown() is machine.exit_info  # idempotent
    with pytest.raises(MachineStateError, match=r"launch\(\) needs state IDLE.*STOPPED"):
        machine.launch()


def test_shutdown_of_a_never_launched_machine_is_a_no_op(fake_config, runs_dir: Path):
    machine = Machine(fake_config(), artifacts_root=runs_dir)
    assert machine.shutdown() is None
    assert machine.state is MachineState.STOPPED


def test_next_boot_reuses_disks_with_new_kernel_args(fake_config, runs_dir: Path):
    first = Machine(
        fake_config(disk=True, kernel_args=("sq.boot=1",)), name="boot", artifacts_root=runs_dir
    )
    with first:
        first.power_cut()
    second = first.next_boot(kernel_args=("sq.boot=2",), name="boot")
    assert second.config.disks == first.config.disks
    assert second.config.kernel_args == ("sq.boot=2",)
    assert second.artifacts.path.parent == first.artifacts.path.parent
    assert second.artifacts.path != first.artifacts.path  # boot, boot-2: never shared
    with second:
        assert "sq.boot=2" in second.argv[second.argv.index("-append") + 1]


def test_missing_binary_and_missing_disk_are_clear(fake_config, runs_dir: Path):
    config = fake_config().replace(qemu_binary="qemu-system-nonexistent")
    with pytest.raises(DependencyMissing, match="apt-get install qemu-system-arm"):
        Machine(config, artifacts_root=runs_dir).launch()
    gone = fake_config(disk=True)
    Path(gone.disks[0].file).unlink()
    with pytest.raises(ConfigError, match="does not exist"):
        Machine(gone, artifacts_root=runs_dir).launch()


def test_atexit_hook_kills_live_machines(fake_config, runs_dir: Path):
    machine = Machine(fake_config("stubborn"), artifacts_root=runs_dir).launch()
    pid = machine.pid
    assert pid in kill_all_live()
    assert pid_gone(pid, within=5)
    machine.shutdown()


def test_qemu_dies_with_a_sigkilled_harness(fake_qemu: Path, tmp_path: Path):
    """An xdist worker crash: the harness process dies without running any Python cleanup,
    and PR_SET_PDEATHSIG (setpriv) makes the kernel kill QEMU."""
    pidfile = tmp_path / "qemu.pid"
    script = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from harness.vm.config import MachineConfig
        from harness.vm.machine import Machine
        cfg = MachineConfig(qemu_binary={str(fake_qemu)!r}, accel="tcg",
                            env=(("FAKE_QEMU_MODE", "stubborn"),
                                 ("FAKE_QEMU_PIDFILE", {str(pidfile)!r})))
        Machine(cfg, artifacts_root=Path({str(tmp_path / "runs")!r})).launch()
        print("up", flush=True)
        time.sleep(60)
    """)
    # TMPDIR: the SIGKILLed harness cannot remove its socket dir; keep it in tmp_path.
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "TMPDIR": str(tmp_path),
    }
    harness = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert harness.stdout is not None
    assert harness.stdout.readline() == b"up\n"
    qemu_pid = int(pidfile.read_text())
    assert not pid_gone(qemu_pid)
    harness.kill()
    harness.wait()
    assert pid_gone(qemu_pid, within=5), "QEMU outlived its SIGKILLed harness"


def test_attach_hides_the_cursor_query_and_names_an_external_quit(fake_config, runs_dir: Path):
    """busybox's ``ESC[6n`` is not shown on the terminal (uart.log keeps it), and a QEMU quit
    over QMP is not reported as the guest's power-off."""
    import io
    import threading

    from harness.vm.interactive import attach

    console = "login prompt \x1b[6n# \n@sleep 0.3"
    with Machine(fake_config(console=console), artifacts_root=runs_dir) as machine:
        output = io.BytesIO()
        machine.console.expect("# ", Deadline(10))
        threading.Timer(0.5, lambda: machine.qmp.quit(timeout=2)).start()
        why = attach(machine, stdout=output, deadline=Deadline(10), forward_input=False)
    assert why == "QEMU was quit over QMP (by another client)"
    assert output.getvalue() == b"login prompt # \r\n"
    assert b"\x1b[6n" in machine.artifacts.uart_log.read_bytes()


def test_socket_dirs_of_a_killed_harness_are_swept(
    fake_config, runs_dir: Path, tmp_path, monkeypatch
):
    """A SIGKILLed harness cannot remove its socket directory; the next VM removes it."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process now
    stale = tmp_path / f"sq-{dead.pid}-boot1-abcd1234"
    stale.mkdir()
    (stale / "serial.sock").write_text("")
    mine = tmp_path / f"sq-{os.getpid()}-other-abcd1234"
    mine.mkdir()
    with Machine(fake_config(), artifacts_root=runs_dir) as machine:
        assert machine._sockets is not None
        assert machine._sockets.directory.name.startswith(f"sq-{os.getpid()}-vm-")
    assert not stale.exists()
    assert mine.exists()  # a live harness's directory stays
