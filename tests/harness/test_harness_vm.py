"""Real VMs from the guest image (TCG here): markers, short-circuit, cleanup, power cut.

Each boot takes about 2 s under TCG. The guest payloads are tiny scripts passed with
``sq.mode=script`` (the guest's services are not needed to test the harness).
"""

import io
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from harness_helpers import pid_gone

from guest.keystored.keys import DeviceKey
from harness.contract.matcher import BootMatcher, Outcome
from harness.contract.runner import run_boot
from harness.contract.spec import BootContract
from harness.deadline import Deadline
from harness.vm.interactive import attach
from harness.vm.kernel_args import shell_args

from support.keyleak import find_leaks, read_seed

REPO = Path(__file__).resolve().parents[2]

FAKE_MARKERS = ["FAKE: alpha ok", "FAKE: beta ok", "FAKE: gamma ok", "FAKE: delta ok"]


def emit_script(lines: list[str], *, tail: str = "") -> str:
    """Guest payload printing ``lines`` in the given order (one write per line), then ``tail``."""
    return f"from guest.console import emit\nfor l in {lines!r}:\n    emit(l)\n{tail}"


@pytest.mark.qemu
def test_shuffled_fake_markers_match_order_tolerantly(vm_factory):
    printed = random.Random(4).sample(FAKE_MARKERS, len(FAKE_MARKERS))
    printed.insert(2, "unrelated: noise between markers")
    assert printed != FAKE_MARKERS
    machine = vm_factory(script=emit_script([*printed, printed[0]]))  # and a duplicate
    matcher = vm_factory.expect_markers(
        machine,
        [*FAKE_MARKERS, re.compile(r"init: started \(python (?P<v>[\d.]+)\)")],
        timeout=60,
        until="poweroff",
    )
    arrived = sorted(matcher.arrivals.values(), key=lambda a: a.line_no)
    assert [a.line for a in arrived if a.line.startswith("FAKE")] == [
        line for line in printed if line.startswith("FAKE")
    ][:4]
    assert matcher.counts[printed[0]] == 2  # an ad-hoc marker's id is its text
    assert machine.exit_info is not None
    assert machine.exit_info.guest_powered_off
    first_line = matcher.arrivals[r"init: started \(python (?P<v>[\d.]+)\)"]
    print(
        f"boot to first console line: {first_line.at:.2f} s; "
        f"power-off at {machine.exit_info.at:.2f} s"
    )
    assert first_line.at is not None
    assert first_line.at < 30
    stamps = machine.artifacts.uart_timestamps.read_text().splitlines()
    assert any(line.endswith("FAKE: gamma ok") for line in stamps)
    assert b"FAKE: delta ok\r\n" in machine.artifacts.uart_log.read_bytes()


@pytest.mark.qemu
def test_failure_pattern_short_circuits_long_before_the_timeout(vm_factory):
    script = emit_script(
        ["FAKE: alpha ok", "SELFTEST: fake check FAIL: injected"],
        tail="import time\ntime.sleep(600)\n",
    )
    machine = vm_factory(script=script, launch=False)
    matcher = BootMatcher(BootContract.of(FAKE_MARKERS, timeout=120))
    started = time.monotonic()
    result = run_boot(machine, matcher, Deadline(120, label="boot timeout"))
    elapsed = time.monotonic() - started
    print(
        f"failure line at {matcher.failure.at:.2f} s after launch; verdict after "
        f"{elapsed:.2f} s (timeout 120 s)"
    )
    assert result.outcome is Outcome.FAILED
    assert matcher.failure.line == "SELFTEST: fake check FAIL: injected"
    assert elapsed < 20
    assert pid_gone(machine.pid)


@pytest.mark.qemu
def test_no_qemu_survives_an_exception_mid_boot(vm_factory):
    machine = vm_factory(
        script=emit_script(["FAKE: alpha ok"], tail="import time\ntime.sleep(600)\n"), launch=False
    )
    pid = None
    with pytest.raises(RuntimeError, match="mid-boot"), machine:
        pid = machine.pid
        machine.console.expect("init: started", vm_factory.timeout(60))
        raise RuntimeError("the test failed mid-boot")
    assert pid is not None
    assert pid_gone(pid)


@pytest.mark.qemu
def test_kvm_falls_back_to_tcg_for_an_aarch64_guest(vm_factory):
    machine = vm_factory(script=emit_script(["FAKE: alpha ok"]))
    assert machine.accel is not None
    if machine.accel.is_kvm:
        pytest.skip("this host runs aarch64 guests under KVM")
    assert "differs from host arch" in machine.accel.reason or "KVM" in machine.accel.reason
    assert machine.qmp.query_kvm()["enabled"] is False
    assert machine.argv[machine.argv.index("-accel") + 1] == "tcg"
    assert machine.argv[machine.argv.index("-cpu") + 1] == "cortex-a57"
    assert machine.qmp.query_status()["status"] == "running"


WRITE = """
import os
from guest.console import emit
fd = os.open("/dev/vda", os.O_RDWR)
os.pwrite(fd, b"POWERCUT-PROOF " + %r.encode(), 4096)
os.fsync(fd)
emit("FAKE: wrote and synced")
import time
time.sleep(600)
"""

READ = """
import os
from guest.console import emit
fd = os.open("/dev/vda", os.O_RDONLY)
emit("FAKE: read " + os.pread(fd, 31, 4096).decode("ascii", "replace"))
"""


@pytest.mark.qemu
def test_power_cut_then_reboot_on_the_same_disk(vm_factory, vm_disk: Path):
    token = os.urandom(8).hex()
    first = vm_factory(script=WRITE % token, name="boot1")
    vm_factory.expect_markers(first, ["FAKE: wrote and synced"], timeout=60)
    info = first.power_cut()
    assert info.how == "power-cut"
    assert info.reason is None  # the guest never said goodbye
    second = vm_factory.reboot(
        first, kernel_args=("sq.mode=script", "sq.script=" + _b64(READ)), name="boot2"
    )
    matcher = vm_factory.expect_markers(
        second, [f"FAKE: read POWERCUT-PROOF {token}"], timeout=60, until="poweroff"
    )
    assert matcher.complete
    assert vm_disk.read_bytes()[4096 : 4096 + 31] == f"POWERCUT-PROOF {token}".encode()


def _b64(source: str) -> str:
    import base64

    return base64.b64encode(source.encode()).decode()


@pytest.mark.qemu
def test_interactive_shell_and_escape(vm_factory):
    machine = vm_factory(kernel_args=shell_args())
    read_fd, write_fd = os.pipe()
    output = io.BytesIO()

    def type_commands() -> None:
        machine.console.expect("interactive shell", Deadline(60))
        time.sleep(0.5)
        os.write(write_fd, b"echo SUM=$((6*7))\n")
        machine.console.expect("SUM=42", Deadline(30))
        os.write(write_fd, b"\x1d")  # Ctrl-]

    typist = threading.Thread(target=type_commands, daemon=True)
    typist.start()
    with os.fdopen(read_fd, "r") as stdin:
        why = attach(machine, stdin=stdin, stdout=output, deadline=Deadline(90))
    typist.join(5)
    os.close(write_fd)
    assert why == "escape"
    assert b"SUM=42" in output.getvalue()
    machine.shutdown()
    assert b"SUM=42" in machine.artifacts.uart_log.read_bytes()


@pytest.mark.qemu
@pytest.mark.skipif(
    not (REPO / "guest" / "init" / "contract.py").exists(),
    reason="the guest's contract mode (guest/init/contract.py) is not written yet",
)
def test_qemu_test_script_passes_the_full_contract(qemu_settings, tmp_path: Path):
    env = {
        **os.environ,
        "ARCH": qemu_settings.arch,
        "RUN_UNTIL_MARKER": "1",
        "RUN_TIMEOUT": f"{qemu_settings.scale(180):g}",
        "QEMU_TIMEOUT_MULTIPLIER": f"{qemu_settings.multiplier:g}",
        "SQ_BUILD_DIR": str(REPO / "build"),
    }
    result = subprocess.run(
        [str(REPO / "scripts" / "qemu-test.sh"), "--runs-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=qemu_settings.scale(240),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "marker contract PASSED" in result.stdout
    # The same markers on every architecture, the blk line with the disk's real geometry
    # (the run's fresh 64 MiB disk: 131072 sectors of 512 bytes).
    assert "blk: virtio-blk up (ss=512 nsec=131072)" in result.stdout
    assert "uart.log: " in result.stdout
    _assert_device_key_never_left_the_disk(tmp_path, result.stdout + result.stderr)


def _assert_device_key_never_left_the_disk(runs_dir: Path, output: str) -> None:
    """The device key's private seed is on the run's disk.img and nowhere else: not in
    either boot's uart.log, nor in any other artifact (QMP log, QEMU stderr, harness.log,
    run.json), nor in what the script printed. The fingerprint is (control)."""
    (run_dir,) = (path for path in runs_dir.iterdir() if (path / "disk.img").is_file())
    seed = read_seed(run_dir / "disk.img")
    uart_logs = sorted(run_dir.glob("boot*/uart.log"))
    assert [log.parent.name for log in uart_logs] == ["boot1", "boot2"]
    fingerprint = DeviceKey(seed).fingerprint
    for log in uart_logs:
        assert f"keystored: device key fingerprint {fingerprint}".encode() in log.read_bytes()
    # disk.img and its copies taken before a later boot (so that boot can be replayed) hold it.
    artifacts = [
        p
        for p in run_dir.rglob("*")
        if p.is_file() and p.name != "disk.img" and not p.name.startswith("disk.before-boot")
    ]
    assert len(artifacts) >= 10
    for path in artifacts:
        assert find_leaks(path.read_bytes(), seed) == [], f"the device key leaked into {path}"
    assert find_leaks(output, seed) == []


@pytest.mark.qemu
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 128 + 15), (signal.SIGINT, 130)])
def test_cli_stops_qemu_on_sigterm_and_ctrl_c(tmp_path: Path, sig, code):
    """`python -m harness boot` killed by SIGTERM or interrupted: QEMU is stopped (checked by
    PID) and the run's artifacts are kept: console log, QEMU's argv/stderr/QMP log, the
    harness log and the disk."""
    script = tmp_path / "sleep.py"
    script.write_text(
        "from guest.console import emit\nemit('FAKE: up')\nimport time\ntime.sleep(600)\n"
    )
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "boot",
            "--mode",
            "script",
            "--script",
            str(script),
            "--no-input",
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert cli.stdout is not None
    deadline = Deadline(60)
    seen = b""
    while b"FAKE: up" not in seen and not deadline.expired:
        seen += cli.stdout.read1(4096)
    assert b"FAKE: up" in seen
    harness_log = next((tmp_path / "runs").glob("*/harness.log"))
    qemu_pid = int(re.search(r"QEMU running: pid (\d+)", harness_log.read_text())[1])
    cli.send_signal(sig)
    _, err = cli.communicate(timeout=30)
    assert cli.returncode == code, err
    assert b"every QEMU process was stopped" in err
    assert pid_gone(qemu_pid)
    run_dir = harness_log.parent
    vm_dir = run_dir / "script"
    assert b"FAKE: up" in (vm_dir / "uart.log").read_bytes()
    assert "FAKE: up" in (vm_dir / "uart.timestamps").read_text()
    assert "-no-reboot" in (vm_dir / "qemu.argv").read_text()
    assert (vm_dir / "qemu.stderr").exists()
    assert '"execute": "quit"' in (vm_dir / "qmp.jsonl").read_text()
    assert "QEMU stopped by QMP quit" in harness_log.read_text()
    assert (run_dir / "disk.img").stat().st_size > 0
