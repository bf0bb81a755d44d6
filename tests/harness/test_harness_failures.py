"""How the harness fails, one test per failure mode, each asserting the message users see.

================================  =====================================================
failure mode                      tests
================================  =====================================================
QEMU binary missing               ``test_missing_qemu_*``
image missing, empty or corrupt   ``test_missing_kernel_*``, ``test_empty_initramfs_*``,
                                  ``test_*_image_*``, ``test_ensure_image_rebuilds_*``
disk image in use by another VM   ``test_disk_in_use_*``
guest kernel panic                ``test_guest_kernel_panic_*``
guest hang                        ``test_guest_hang_*``
Ctrl-C / SIGTERM                  ``test_ctrl_c_*`` (the CLI: ``test_harness_vm.py``)
================================  =====================================================

Tests marked ``qemu`` boot the real guest (about 2-3 s per boot under TCG); the others use the
fake QEMU of ``fake_qemu.py``.
"""

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness_helpers import pid_gone

from harness import cli, diagnosis
from harness.contract.matcher import BootMatcher, Outcome
from harness.contract.runner import ContractRunner, run_boot
from harness.contract.spec import BootContract, Contract
from harness.deadline import Deadline
from harness.diagnosis import DiskUser, LockConflict, boot_hints, disk_users, lock_conflict
from harness.errors import ConfigError, DependencyMissing, DiskInUse, LaunchError, Terminated
from harness.vm.config import MachineConfig
from harness.vm.disks import create_disk
from harness.vm.machine import Machine, MachineState

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "harness"]

REBUILD = "rebuild the image with `make image` (or `python -m harness image --force`)"
NO_INIT = re.compile(
    r"the guest never printed 'init: started' \(the console printed (nothing|\d+ lines?) in "
    r"[\d.]+ s\): the kernel or initramfs is likely broken; " + re.escape(REBUILD)
)

# What QEMU 7.2 (Debian 12) prints when another process holds the disk image.
LOCK_STDERR = (
    "2025-01-01T00:00:00.000000Z qemu-system-aarch64: -device virtio-blk-device,drive=d0: "
    'Failed to get "write" lock\nIs another process using the image [{disk}]?\n'
)


def sleeper(*, stdin=None) -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"], stdin=stdin)


# -- 1. QEMU binary missing ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "package"), [("aarch64", "qemu-system-arm"), ("x86_64", "qemu-system-x86")]
)
def test_missing_qemu_names_the_debian_package_and_the_command(
    arch, package, runs_dir: Path, tmp_path: Path, monkeypatch
):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    machine = Machine(MachineConfig(arch=arch), artifacts_root=runs_dir)
    with pytest.raises(DependencyMissing) as caught:
        machine.launch()
    assert str(caught.value) == (
        f"QEMU binary 'qemu-system-{arch}' not found on PATH: install the Debian package "
        f"{package} with `sudo apt-get install {package} qemu-utils`, or run `make setup` "
        f"(installs every package and the venv the harness needs)"
    )
    assert machine.state is MachineState.STOPPED
    assert machine.pid is None


def test_missing_qemu_at_an_explicit_path(runs_dir: Path):
    config = MachineConfig(qemu_binary="/opt/nowhere/qemu-system-aarch64")
    with pytest.raises(DependencyMissing) as caught:
        Machine(config, artifacts_root=runs_dir).launch()
    assert str(caught.value).startswith(
        "QEMU binary '/opt/nowhere/qemu-system-aarch64' does not exist or is not executable: "
        "install the Debian package qemu-system-arm with "
        "`sudo apt-get install qemu-system-arm qemu-utils`, or run `make setup`"
    )


@pytest.mark.network
def test_missing_qemu_through_the_cli(guest_image, tmp_path: Path):
    """`python -m harness boot` on a host without QEMU: exit 2 and the install command."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    result = subprocess.run(
        [*CLI, "boot", "--mode", "shell", "--no-input", "--runs-dir", str(tmp_path / "runs")],
        cwd=REPO,
        env={**os.environ, "PATH": str(empty)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert (
        "error: QEMU binary 'qemu-system-aarch64' not found on PATH: install the Debian "
        "package qemu-system-arm with `sudo apt-get install qemu-system-arm qemu-utils`, or "
        "run `make setup`"
    ) in result.stderr
    assert "Traceback" not in result.stderr


# -- 2. image missing, empty or corrupt ----------------------------------------------------
def test_missing_kernel_says_how_to_build_the_image(fake_config, runs_dir: Path, tmp_path):
    kernel = tmp_path / "nothing" / "vmlinuz"
    config = fake_config().replace(kernel=kernel)
    with pytest.raises(ConfigError) as caught:
        Machine(config, artifacts_root=runs_dir).launch()
    assert str(caught.value) == (
        f"kernel {kernel} does not exist: build the guest image with `make image` "
        f"(or `python -m harness image`)"
    )


def test_empty_initramfs_is_refused_before_launch(fake_config, runs_dir: Path, tmp_path):
    """An empty kernel or initramfs would boot into silence: refused before QEMU starts."""
    initramfs = tmp_path / "initramfs.cpio"
    initramfs.write_bytes(b"")
    config = fake_config(kernel_args=("console=ttyAMA0",)).replace(initramfs=initramfs)
    machine = Machine(config, artifacts_root=runs_dir)
    with pytest.raises(ConfigError) as caught:
        machine.launch()
    assert str(caught.value) == (
        f"initramfs {initramfs} is empty: the guest image is broken; rebuild it with "
        f"`make image` (or `python -m harness image --force`)"
    )
    assert machine.pid is None


def test_a_panic_before_init_blames_the_image(fake_config, runs_dir: Path):
    """The kernel panics before the guest's init ran (fake console of a damaged initramfs)."""
    config = fake_config(
        "poweroff",
        console="[    0.60] Kernel panic - not syncing: VFS: Unable to mount root fs on "
        "unknown-block(0,0)",
    )
    matcher = BootMatcher(BootContract.of(["FAKE: never"], timeout=60))
    result = run_boot(Machine(config, artifacts_root=runs_dir), matcher, Deadline(30))
    assert result.outcome is Outcome.FAILED
    assert len(matcher.hints) == 1
    assert NO_INIT.fullmatch(matcher.hints[0]), matcher.hints
    assert "the console printed 1 line in" in matcher.hints[0]
    assert f"  hint: {matcher.hints[0]}" in result.report()


def test_no_image_hint_once_init_started_or_too_early():
    lines = [(2.3, "init: started (python 3.11.2)"), (2.5, "FAKE: a")]
    assert boot_hints(lines, now=3.0, qemu_exited=True, failed=True, timed_out=False) == []
    # A deadline shorter than a boot says nothing about the image.
    assert boot_hints([], now=1.0, qemu_exited=False, failed=False, timed_out=True) == []
    late = boot_hints([], now=30.0, qemu_exited=False, failed=False, timed_out=True)
    assert late == [
        "the guest never printed 'init: started' (the console printed nothing in 30.0 s): "
        f"the kernel or initramfs is likely broken; {REBUILD}"
    ]
    # The multiplier scales the wait (a slow CI host).
    assert boot_hints([], now=30.0, qemu_exited=False, failed=False, timed_out=True,
                      multiplier=2) == []  # fmt: skip


def _broken_image_config(image, vm_factory, tmp_path: Path, *, kernel=None, initramfs=None):
    """The image's boot config with its kernel or initramfs replaced by a damaged copy."""
    base = vm_factory.config()
    broken = tmp_path / "broken"
    broken.mkdir(exist_ok=True)
    changes = {}
    if kernel is not None:
        (broken / "vmlinuz").write_bytes(kernel(image.kernel.read_bytes()))
        changes["kernel"] = broken / "vmlinuz"
    if initramfs is not None:
        (broken / "initramfs.cpio").write_bytes(initramfs(image.initramfs.read_bytes()))
        changes["initramfs"] = broken / "initramfs.cpio"
    return base.replace(**changes)


@pytest.mark.qemu
def test_truncated_initramfs_fails_the_contract_fast_and_blames_the_image(
    guest_image, vm_factory, tmp_path: Path
):
    """The real contract on a half-copied initramfs: boot 1 fails in seconds (the kernel
    panics: no root filesystem), the report names the panic line and says to rebuild."""
    config = _broken_image_config(
        guest_image, vm_factory, tmp_path, initramfs=lambda b: b[: len(b) // 2]
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    machines: list[Machine] = []
    runner = ContractRunner(
        config,
        Contract.load(),
        run_dir=run_dir,
        on_boot_start=lambda _number, machine: machines.append(machine),
    )
    started = time.monotonic()
    result = runner.run()
    elapsed = time.monotonic() - started
    print(f"truncated initramfs: verdict after {elapsed:.2f} s (boot timeout 75 s)")
    assert not result.passed
    (boot,) = result.boots
    assert boot.outcome is Outcome.FAILED
    assert boot.matcher.failure is not None
    assert "Kernel panic - not syncing: VFS: Unable to mount root fs" in boot.matcher.failure.line
    assert elapsed < 20
    report = result.report()
    assert "hint: the guest never printed 'init: started'" in report
    assert REBUILD in report
    assert "boots not run after the failure: 2" in report
    summary = json.loads((run_dir / "run.json").read_text())
    assert NO_INIT.fullmatch(summary["boots"][0]["hints"][0])
    assert [pid_gone(machine.pid) for machine in machines] == [True]


@pytest.mark.qemu
def test_garbage_kernel_times_out_silently_and_blames_the_image(
    guest_image, vm_factory, tmp_path: Path, monkeypatch
):
    """A kernel file of random bytes: QEMU runs it and nothing is ever printed. The boot
    ends at its deadline (test-chosen here; the contract's boot timeout in a real run) and
    the report says the image is likely broken."""
    monkeypatch.setattr(diagnosis, "NO_INIT_HINT_AFTER", 4.0)
    config = _broken_image_config(
        guest_image, vm_factory, tmp_path, kernel=lambda _: os.urandom(1 << 20)
    )
    machine = vm_factory(config=config, launch=False)
    matcher = BootMatcher(BootContract.of(["FAKE: never"], timeout=60))
    started = time.monotonic()
    result = run_boot(machine, matcher, Deadline(6, label="test deadline"))
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.TIMEOUT
    assert matcher.reason == "test deadline: 6 s passed"
    assert len(matcher.hints) == 1
    assert NO_INIT.fullmatch(matcher.hints[0])
    assert "the console printed nothing" in matcher.hints[0]
    assert "(the console printed nothing)" in result.report()
    assert elapsed < 15
    assert pid_gone(machine.pid)


@pytest.mark.network
def test_ensure_image_rebuilds_a_damaged_image(guest_image, tmp_path: Path, caplog):
    """A built image whose files no longer match the manifest's sha256 (a flipped byte in the
    initramfs, a truncated kernel, a damaged cached segment) is rebuilt, with a warning."""
    import shutil

    from harness.image import manifest
    from harness.image.build import ImageBuilder
    from harness.image.progress import Progress

    build = tmp_path / "build"
    shutil.copytree(guest_image.kernel.parent, build / "images" / "aarch64")
    stream = io.StringIO()
    builder = ImageBuilder("aarch64", build_dir=build, progress=Progress(True, stream=stream))
    image = builder.ensure()  # a no-op unless guest/ changed since the image was built
    out = image.kernel.parent
    initramfs = bytearray(image.initramfs.read_bytes())
    initramfs[len(initramfs) // 2] ^= 0xFF
    image.initramfs.write_bytes(initramfs)
    kernel = image.kernel.read_bytes()
    image.kernel.write_bytes(kernel[: len(kernel) // 2])
    segment = out / "segments" / "stdlib.cpio"
    damaged = bytearray(segment.read_bytes())
    damaged[100] ^= 0x01
    segment.write_bytes(damaged)
    stream.truncate(0)

    started = time.monotonic()
    assert builder.ensure() == image
    elapsed = time.monotonic() - started
    print(f"damaged image rebuilt in {elapsed:.2f} s")
    assert (
        f"image: warning: the image in {out} is damaged (initramfs.cpio does not match its "
        f"sha256 in the manifest; vmlinuz is {len(kernel) // 2} bytes, the manifest says "
        f"{len(kernel)}): rebuilding"
    ) in stream.getvalue()
    assert f"segment {segment} does not match its sha256: rebuilding it" in caplog.text
    assert image.kernel.read_bytes() == kernel
    data = manifest.read(image.manifest)
    assert data is not None
    assert manifest.output_problems(data, out) == []
    assert segment.read_bytes() != bytes(damaged)


def test_an_image_that_cannot_be_rebuilt_is_a_harness_error_not_a_traceback(tmp_path: Path):
    """`python -m harness run` when the image build fails (offline, disk full...): exit 2
    with the builder's message."""
    script = (
        "import sys\n"
        "import harness.image\n"
        "from harness.image.errors import NetworkError\n"
        "def ensure_image(*args, **kwargs):\n"
        "    raise NetworkError('cannot reach deb.debian.org: check the network or the proxy')\n"
        "harness.image.ensure_image = ensure_image\n"
        "from harness.cli import main\n"
        f"sys.exit(main(['run', '--runs-dir', {str(tmp_path)!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "error: cannot reach deb.debian.org: check the network or the proxy"
    )
    assert "Traceback" not in result.stderr


# -- 3. disk image in use by another VM ----------------------------------------------------
def test_lock_failure_is_recognised_in_qemu_stderr():
    text = LOCK_STDERR.format(disk="/tmp/x/disk.img")
    assert lock_conflict(text) == LockConflict("/tmp/x/disk.img", "write")
    assert lock_conflict("qemu: Could not open '/nope'") is None


def test_disk_users_names_the_process_holding_the_file(tmp_path: Path):
    disk = create_disk(tmp_path / "disk.img", 1)
    with open(disk, "rb") as handle:
        holder = sleeper(stdin=handle)
    try:
        assert DiskUser(holder.pid, "sleep 60") in disk_users(disk)
    finally:
        holder.kill()
        holder.wait()
    assert disk_users(disk) == []
    assert disk_users(tmp_path / "absent.img") == []


def test_disk_in_use_names_the_disk_and_the_other_process(fake_config, runs_dir: Path):
    config = fake_config("exit-early", disk=True)
    disk = config.disks[0].file
    config = config.replace(env=(*config.env, ("FAKE_QEMU_STDERR", LOCK_STDERR.format(disk=disk))))
    with open(disk, "rb") as handle:
        holder = sleeper(stdin=handle)
    try:
        with pytest.raises(DiskInUse) as caught:
            Machine(config, name="second", artifacts_root=runs_dir).launch()
    finally:
        holder.kill()
        holder.wait()
    error = caught.value
    assert error.message == (
        f"second: disk image {disk} is in use by pid {holder.pid} (sleep 60): QEMU could not "
        f'get its "write" lock. Stop that VM first, or give this one its own copy of the disk'
    )
    assert error.disk == disk
    assert error.users == (f"pid {holder.pid} (sleep 60)",)
    assert isinstance(error, LaunchError)
    assert "exit code: 1" in str(error)
    assert 'Failed to get "write" lock' in error.stderr


def test_disk_in_use_by_an_unseen_process_says_so(fake_config, runs_dir: Path):
    config = fake_config("exit-early", disk=True)
    disk = config.disks[0].file
    config = config.replace(env=(*config.env, ("FAKE_QEMU_STDERR", LOCK_STDERR.format(disk=disk))))
    with pytest.raises(DiskInUse) as caught:
        Machine(config, artifacts_root=runs_dir).launch()
    assert caught.value.message == (
        f"vm: disk image {disk} is in use by another process (none of this user's processes "
        f"has it open: another user's, or another host's on a shared filesystem): QEMU could "
        f'not get its "write" lock. Stop that VM first, or give this one its own copy of the '
        f"disk"
    )


@pytest.mark.qemu
def test_disk_in_use_by_another_vm(vm_factory, vm_disk: Path):
    """Two real QEMUs on one disk: the second fails at once, naming the disk and the first."""
    sleep = "import time\ntime.sleep(600)\n"
    first = vm_factory(script=sleep, name="first")
    second = vm_factory(script=sleep, name="second", launch=False)
    started = time.monotonic()
    with pytest.raises(DiskInUse) as caught:
        second.launch()
    elapsed = time.monotonic() - started
    print(f"second QEMU refused after {elapsed:.2f} s")
    assert caught.value.message == (
        f"second: disk image {vm_disk} is in use by pid {first.pid} (qemu-system-aarch64 "
        f'-name first): QEMU could not get its "write" lock. Stop that VM first, or give this '
        f"one its own copy of the disk"
    )
    assert elapsed < 10
    assert second.state is MachineState.STOPPED
    assert pid_gone(second.pid)
    assert first.qmp.query_status()["running"] is True  # the first VM is untouched


# -- 4. guest kernel panic -----------------------------------------------------------------
PANICS = {
    "sysrq-crash": (
        "from guest.console import emit\nemit('FAKE: crashing')\n"
        "with open('/proc/sysrq-trigger', 'w') as f:\n    f.write('c')\n",
        "Kernel panic - not syncing: sysrq triggered crash",
    ),
    "pid1-exit": (
        "import os\nfrom guest.console import emit\nemit('FAKE: exiting')\nos._exit(1)\n",
        "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100",
    ),
}


@pytest.mark.qemu
@pytest.mark.parametrize("how", sorted(PANICS))
def test_guest_kernel_panic_fails_within_seconds_naming_the_panic_line(vm_factory, how):
    script, panic = PANICS[how]
    machine = vm_factory(script=script, launch=False)
    matcher = BootMatcher(BootContract.of(["FAKE: never"], timeout=120))
    started = time.monotonic()
    result = run_boot(machine, matcher, Deadline(120, label="boot timeout"))
    elapsed = time.monotonic() - started
    print(f"{how}: verdict after {elapsed:.2f} s (timeout 120 s)")
    assert result.outcome is Outcome.FAILED
    assert matcher.failure is not None
    assert matcher.failure.pattern_id == "kernel-panic"
    assert matcher.failure.line.endswith(panic)
    report = result.report()
    assert f"failure line {matcher.failure.line_no} (at " in report
    assert panic in report
    assert f"reason: failure pattern 'kernel-panic' on line {matcher.failure.line_no}" in report
    assert matcher.hints == []  # init had started: nothing blames the image
    assert elapsed < 20, f"{elapsed:.1f} s: far under the 120 s timeout is the point"
    assert pid_gone(machine.pid)


# -- 5. guest hang -------------------------------------------------------------------------
@pytest.mark.qemu
def test_guest_hang_times_out_with_an_excerpt_and_no_qemu_left(vm_factory):
    machine = vm_factory(
        script="from guest.console import emit\nemit('FAKE: hanging')\n"
        "import time\ntime.sleep(3600)\n"
    )
    machine.console.expect("FAKE: hanging", vm_factory.timeout(60))
    matcher = BootMatcher(BootContract.of(["FAKE: alpha ok", "FAKE: beta ok"], timeout=120))
    started = time.monotonic()
    result = run_boot(machine, matcher, Deadline(6, label="hang deadline"))
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.TIMEOUT
    assert matcher.reason == "hang deadline: 6 s passed"
    report = result.report()
    assert "boot 1: TIMEOUT" in report
    assert "missing markers: FAKE: alpha ok, FAKE: beta ok" in report
    assert "MISSING          FAKE: alpha ok  [FAKE: alpha ok]" in report
    assert re.search(r"console excerpt \(\d+ lines in total\):", report)
    assert re.search(r"\n\s+\d+\s+[\d.]+  FAKE: hanging\n", report)
    assert re.search(
        r"hint: the console was silent for the last [\d.]+ s \(last line at [\d.]+ s\): "
        r"the guest looks hung, not slow",
        report,
    )
    assert 6 <= elapsed < 12
    assert result.exit is not None
    assert result.exit.how == "quit"
    assert pid_gone(machine.pid)


# -- 6. Ctrl-C / SIGTERM -------------------------------------------------------------------
def test_ctrl_c_during_a_contract_run_stops_qemu_and_keeps_the_artifacts(
    fake_config, runs_dir: Path, tmp_path: Path
):
    """Ctrl-C (KeyboardInterrupt) in the middle of a boot: QEMU gone, and the evidence of the
    interrupted boot and the run summary stay on disk."""
    pidfile = tmp_path / "qemu.pid"
    config = fake_config(
        "contract",
        disk=True,
        kernel_args=("console=ttyAMA0",),
        delay="0.2",
        pidfile=str(pidfile),
    )

    def interrupt(event):
        if event.kind == "marker":
            raise KeyboardInterrupt

    runner = ContractRunner(config, Contract.load(), run_dir=runs_dir, progress=interrupt)
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert pid_gone(int(pidfile.read_text()))
    boot = runs_dir / "boot1"
    assert b"init: started" in (boot / "uart.log").read_bytes()
    assert (boot / "uart.timestamps").read_text()
    assert "-nodefaults" in (boot / "qemu.argv").read_text()
    assert (boot / "qemu.stderr").exists()
    events = [json.loads(line) for line in (boot / "qmp.jsonl").read_text().splitlines()]
    assert any(e["msg"].get("execute") == "quit" for e in events)
    summary = json.loads((runs_dir / "run.json").read_text())
    assert summary["passed"] is False
    assert summary["expected_boots"] == [1, 2]


def test_ctrl_c_inside_a_machine_keeps_its_console_log(fake_config, runs_dir: Path):
    with (
        pytest.raises(KeyboardInterrupt),
        Machine(fake_config(console="FAKE: up"), artifacts_root=runs_dir) as machine,
    ):
        machine.console.expect("FAKE: up", Deadline(10))
        raise KeyboardInterrupt
    assert pid_gone(machine.pid)
    assert machine.artifacts.uart_log.read_bytes() == b"FAKE: up\r\n"
    assert machine.artifacts.qemu_argv.exists()
    assert machine.exit_info is not None
    assert machine.exit_info.how == "quit"


def test_disk_in_use_reports_go_through_the_runner(fake_config, runs_dir: Path):
    """A contract run whose disk is held elsewhere stops with DiskInUse, not a verdict."""
    config = fake_config("exit-early", disk=True, kernel_args=("console=ttyAMA0",))
    disk = config.disks[0].file
    config = config.replace(env=(*config.env, ("FAKE_QEMU_STDERR", LOCK_STDERR.format(disk=disk))))
    with pytest.raises(DiskInUse, match=f"boot1: disk image {re.escape(disk)} is in use"):
        ContractRunner(config, Contract.load(), run_dir=runs_dir).run()
    assert json.loads((runs_dir / "run.json").read_text())["boots"] == []


def test_an_interrupted_run_records_the_boot_it_interrupted(
    fake_config, runs_dir: Path, capsys: pytest.CaptureFixture[str]
):
    """Ctrl-C or SIGTERM mid-boot: run.json names the boot that was running and what its
    console showed, so ``markers RUN`` replays it instead of saying there is no record."""
    config = fake_config("contract", disk=True, kernel_args=("console=ttyAMA0",), delay="0.2")

    def interrupt(event):
        if event.kind == "marker":
            raise Terminated(15)

    runner = ContractRunner(config, Contract.load(), run_dir=runs_dir, progress=interrupt)
    with pytest.raises(Terminated):
        runner.run()
    (boot,) = json.loads((runs_dir / "run.json").read_text())["boots"]
    assert boot["number"] == 1
    assert boot["outcome"] == "incomplete"
    assert boot["reason"] == "the run was interrupted (signal 15)"
    assert boot["dir"] == str(runs_dir / "boot1")
    assert "init-started" in boot["markers"]
    assert cli.main(["markers", str(runs_dir)]) == cli.EXIT_FAILED
    out = capsys.readouterr().out
    assert "boot 1 (" in out
    assert "the run was interrupted (signal 15) (recorded in run.json)" in out
    assert "boots without a console record: 2" in out


def test_a_locked_disk_is_reported_without_qmp_negotiation_noise(
    fake_config, runs_dir: Path, caplog: pytest.LogCaptureFixture
):
    """QEMU connects its sockets, then fails on the disk lock: the user sees DiskInUse, not
    qemu.qmp's negotiation errors (EOFError) before it."""
    config = fake_config("lock-fail", disk=True)
    disk = config.disks[0].file
    config = config.replace(env=(*config.env, ("FAKE_QEMU_STDERR", LOCK_STDERR.format(disk=disk))))
    with caplog.at_level(logging.WARNING), pytest.raises(DiskInUse):
        Machine(config, artifacts_root=runs_dir).launch()
    noisy = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("qemu.qmp") and r.levelno >= logging.WARNING
    ]
    assert noisy == []  # was: "Failed to receive Greeting: EOFError", "...session: EOFError"
