"""Record/replay without QEMU: the command line, the overlays, the record's checks, the diff."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import EXIT_HARNESS, main
from harness.errors import ConfigError
from harness.vm.accel import AccelChoice
from harness.vm.config import DiskSpec, MachineConfig
from harness.vm.gdb import gdb_command, kernel_release
from harness.vm.overlays import backing_chain, create_overlay, sha256_file
from harness.vm.qemu_args import Endpoints, build_argv
from harness.vm.record import POWERCUT_REFUSAL, RecordReplay
from harness.vm.recording import RunRecorder
from harness.vm.replaying import RecordError, check_boot, compare_console, load_boot

TCG = AccelChoice("tcg", "test")
KVM = AccelChoice("kvm", "test")
ENDPOINTS = Endpoints(Path("/tmp/sq-x/serial.sock"), Path("/tmp/sq-x/qmp.sock"))
needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")


def pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]


def config(**overrides) -> MachineConfig:
    base = dict(
        kernel=Path("/img/vmlinuz"),
        initramfs=Path("/img/initramfs.cpio"),
        kernel_args=("console=ttyAMA0", "sq.boot=1"),
        disks=(DiskSpec("/r/record/boot1.qcow2", format="qcow2"),),
        devices=("virtio-rng-device",),
    )
    base.update(overrides)
    return MachineConfig(**base)


# -- the command line -------------------------------------------------------------------------


def test_a_recording_boot_counts_instructions_and_puts_blkreplay_between_device_and_disk():
    recording = config(record=RecordReplay("record", Path("/r/record/boot1.rr")))
    argv = build_argv(recording, ENDPOINTS, TCG, qemu_path="/usr/bin/qemu-system-aarch64")
    assert pairs(argv, "-icount") == ["shift=auto,rr=record,rrfile=/r/record/boot1.rr"]
    assert pairs(argv, "-drive") == [
        "if=none,id=d0-direct,file=/r/record/boot1.qcow2,format=qcow2,cache=writeback",
        "driver=blkreplay,if=none,image=d0-direct,id=d0",
    ]
    assert pairs(argv, "-device")[0] == "virtio-blk-device,drive=d0"
    assert pairs(argv, "-accel") == ["tcg"]


def test_a_replaying_boot_reads_the_log_with_the_same_shift():
    replaying = config(record=RecordReplay("replay", Path("/r/a,b.rr"), icount="shift=7"))
    argv = build_argv(replaying, ENDPOINTS, TCG, qemu_path="qemu")
    assert pairs(argv, "-icount") == ["shift=7,rr=replay,rrfile=/r/a,,b.rr"]


def test_a_plain_boot_has_no_icount_and_no_filter():
    argv = build_argv(config(), ENDPOINTS, TCG, qemu_path="qemu")
    assert "-icount" not in argv
    assert not any("blkreplay" in arg for arg in argv)


def test_record_means_tcg_and_refuses_kvm():
    assert config(record=RecordReplay("record", Path("x.rr"))).accel == "tcg"
    with pytest.raises(ConfigError, match="needs TCG"):
        config(accel="kvm", record=RecordReplay("record", Path("x.rr")))
    recording = config(record=RecordReplay("record", Path("x.rr")))
    with pytest.raises(ConfigError, match="needs TCG"):
        build_argv(recording, ENDPOINTS, KVM, qemu_path="qemu")


def test_record_refuses_the_power_cut_disk_server():
    nbd = DiskSpec.nbd_unix("/tmp/sq/nbd.sock")
    with pytest.raises(ConfigError) as caught:
        config(disks=(nbd,), record=RecordReplay("record", Path("x.rr")))
    assert str(caught.value) == POWERCUT_REFUSAL
    assert "nbdkit" in POWERCUT_REFUSAL and "power cut" in POWERCUT_REFUSAL


def test_powercut_record_is_refused_with_the_reason(capsys: pytest.CaptureFixture[str]):
    assert main(["powercut", "--record"]) == EXIT_HARNESS
    assert capsys.readouterr().err.strip() == f"error: {POWERCUT_REFUSAL}"


def test_bad_record_settings_are_refused():
    with pytest.raises(ConfigError, match="mode"):
        RecordReplay("rewind", Path("x.rr"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="without rr="):
        RecordReplay("record", Path("x.rr"), icount="shift=auto,rr=replay")
    with pytest.raises(ConfigError, match="both set"):
        config(icount="shift=auto", record=RecordReplay("record", Path("x.rr")))


# -- overlays, the record and its checks ------------------------------------------------------


@pytest.fixture
def recorded_run(tmp_path: Path) -> Path:
    """A run directory as `run --record` leaves it after two boots (QEMU's part faked)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (tmp_path / "kernel").write_bytes(b"\0" * 64 + b"Linux version 6.1.0-56-arm64 (debian)")
    (tmp_path / "initramfs").write_bytes(b"initramfs")
    disk = run_dir / "disk.img"
    disk.write_bytes(b"\0" * 65536)
    base = config(
        kernel=tmp_path / "kernel",
        initramfs=tmp_path / "initramfs",
        disks=(DiskSpec(str(disk)),),
        qemu_binary="true",
    )
    recorder = RunRecorder(run_dir, base)
    boots = []
    for number in (1, 2):
        boot = recorder.boot_config(number, base.with_kernel_args(f"sq.boot={number}"))
        assert boot.record is not None and boot.record.mode == "record"
        assert "nokaslr" in boot.kernel_args
        boot.record.rrfile.write_bytes(b"rr log %d" % number)
        boot_dir = run_dir / f"boot{number}"
        boot_dir.mkdir()
        (boot_dir / "uart.log").write_bytes(b"init: started\nSELFTEST: boot %d complete\n" % number)
        recorder.boot_done(number, boot_dir, "exited")
        boots.append({"number": number, "outcome": "failed" if number == 2 else "passed"})
    summary = {"run": run_dir.name, "boots": boots, "record": recorder.summary()}
    (run_dir / "run.json").write_text(json.dumps(summary))
    return run_dir


@needs_qemu_img
def test_each_boot_writes_its_own_overlay_over_the_previous_ones(recorded_run: Path):
    chain = backing_chain(recorded_run / "record" / "boot2.qcow2")
    assert [Path(name).name for name in chain] == ["boot2.qcow2", "boot1.qcow2", "disk.img"]
    record = json.loads((recorded_run / "run.json").read_text())["record"]
    assert record["base"]["path"] == "disk.img"
    assert record["base"]["sha256"] == sha256_file(recorded_run / "disk.img")
    assert [b["backing"] for b in record["boots"]] == ["disk.img", "record/boot1.qcow2"]
    assert record["boots"][1]["overlay"]["path"] == "record/boot2.qcow2"


@needs_qemu_img
def test_overlays_name_their_backing_relatively_so_a_copied_run_still_opens(
    recorded_run: Path, tmp_path: Path
):
    moved = shutil.copytree(recorded_run, tmp_path / "downloaded")
    chain = backing_chain(moved / "record" / "boot2.qcow2")
    assert all(str(name).startswith(str(moved)) for name in chain[1:])
    assert len(check_boot(load_boot(moved, 2))) == 6  # log, console, kernel, initrd, 2 disks


@needs_qemu_img
def test_an_overlay_is_never_reused(recorded_run: Path):
    with pytest.raises(ConfigError, match="never reused"):
        create_overlay(recorded_run / "record" / "boot1.qcow2", recorded_run / "disk.img", "raw")


@needs_qemu_img
def test_the_default_boot_is_the_failing_one_and_its_chain_is_checked(recorded_run: Path):
    boot = load_boot(recorded_run)
    assert boot.number == 2
    assert boot.backing == recorded_run / "record" / "boot1.qcow2"
    assert boot.backing_format == "qcow2"
    checked = check_boot(boot)
    assert any("boot 1 disk overlay" in line for line in checked)
    replay = boot.replay_config(recorded_run / "scratch.qcow2", gdb_port=4321)
    assert replay.record is not None and replay.record.mode == "replay"
    assert replay.start_paused and replay.extra_args[-2:] == ("-gdb", "tcp:127.0.0.1:4321")
    assert "sq.boot=2" in replay.kernel_args and "nokaslr" in replay.kernel_args
    assert replay.kernel == recorded_run / "record" / "kernel"


@needs_qemu_img
@pytest.mark.parametrize(
    ("victim", "what"),
    [
        ("record/boot1.rr", "boot 1 replay log"),
        ("boot1/uart.log", "boot 1 recorded console"),
        ("disk.img", "base disk"),
        ("record/kernel", "kernel"),
    ],
)
def test_one_changed_byte_in_the_record_refuses_the_replay(recorded_run: Path, victim, what):
    path = recorded_run / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(RecordError, match=f"record damaged: {what} .* sha256"):
        check_boot(load_boot(recorded_run, 1))


@needs_qemu_img
def test_a_changed_overlay_below_the_boot_refuses_its_replay(recorded_run: Path):
    with open(recorded_run / "record" / "boot1.qcow2", "ab") as handle:
        handle.write(b"\0")
    check_boot(load_boot(recorded_run, 1))  # boot 1 does not read its own overlay
    with pytest.raises(RecordError, match="boot 1 disk overlay .* bytes"):
        check_boot(load_boot(recorded_run, 2))


@needs_qemu_img
def test_a_missing_replay_log_is_refused(recorded_run: Path):
    (recorded_run / "record" / "boot2.rr").unlink()
    with pytest.raises(RecordError, match="record incomplete: boot 2 replay log"):
        check_boot(load_boot(recorded_run, 2))


def test_a_run_that_was_not_recorded_says_how_to_record_it(tmp_path: Path):
    (tmp_path / "run.json").write_text(json.dumps({"boots": []}))
    with pytest.raises(RecordError, match="run --record"):
        load_boot(tmp_path)


@needs_qemu_img
def test_an_unknown_boot_lists_the_recorded_ones(recorded_run: Path):
    with pytest.raises(RecordError, match=r"boot 3 .*recorded: 1, 2"):
        load_boot(recorded_run, 3)


@needs_qemu_img
def test_the_replay_command_refuses_a_damaged_record_before_launching(
    recorded_run: Path, capsys: pytest.CaptureFixture[str]
):
    (recorded_run / "record" / "boot1.rr").write_bytes(b"truncated")
    code = main(["replay", str(recorded_run), "--boot", "1"])
    out = capsys.readouterr().out
    assert code == EXIT_HARNESS
    assert "replay: refused: record damaged: boot 1 replay log" in out
    assert not list(recorded_run.glob("replay-boot*"))  # no QEMU was started


# -- the console comparison and gdb ------------------------------------------------------------


def test_identical_consoles_compare_equal():
    assert compare_console(b"a\nb\n", b"a\nb\n") is None


def test_a_divergence_names_byte_line_and_both_lines():
    found = compare_console(b"one\ntwo ok\nthree\n", b"one\ntwo FAIL\nthree\n")
    assert found is not None
    assert (found.offset, found.line) == (8, 2)
    assert found.recorded == "'two ok'" and found.replayed == "'two FAIL'"
    assert "diverges at byte 8 (line 2)" in found.describe()


def test_a_replay_that_stops_early_or_runs_on_diverges_at_the_shorter_end():
    early = compare_console(b"a\nb\n", b"a\n")
    assert early is not None and early.offset == 2 and early.replayed == "<end of console>"
    longer = compare_console(b"a\n", b"a\nextra\n")
    assert longer is not None and longer.recorded == "<end of console>"
    assert longer.replayed == "'extra'"


def test_kernel_release_comes_from_the_banner(tmp_path: Path):
    kernel = tmp_path / "Image"
    kernel.write_bytes(b"\x00" * (1 << 20) + b"Linux version 6.1.0-56-arm64 (debian-kernel@")
    assert kernel_release(kernel) == "6.1.0-56-arm64"
    kernel.write_bytes(b"\x1f\x8b compressed")
    assert kernel_release(kernel) is None


@needs_qemu_img
def test_the_gdb_command_attaches_and_says_where_the_symbols_are(recorded_run: Path):
    lines = gdb_command(load_boot(recorded_run, 1), 4321)
    text = "\n".join(lines)
    assert "gdb-multiarch -q" in text
    assert "-ex 'target remote 127.0.0.1:4321'" in text
    assert "set architecture aarch64" in text
    if "/usr/lib/debug/boot/vmlinux-6.1.0-56-arm64" not in lines[1]:
        assert "linux-image-6.1.0-56-arm64-dbg" in text


# -- the record profile and `run --record`, with the fake QEMU ---------------------------------


def test_the_record_profile_records_and_needs_tcg():
    from harness.contract.profiles import Settings
    from harness.contract.spec import Contract

    profile = Contract.load().profile("record")
    assert profile.settings.record is True
    with pytest.raises(ConfigError, match="needs TCG"):
        profile.resolve(Settings(), accel="kvm")


def test_a_profile_record_setting_must_be_a_boolean():
    from harness.contract.spec import DEFAULT_CONTRACT, Contract
    from harness.errors import ContractError

    text = Path(DEFAULT_CONTRACT).read_text()
    text = text.replace("record = true", 'record = "yes"')
    with pytest.raises(ContractError, match="record must be true or false"):
        Contract.loads(text)


def test_run_record_refuses_kvm_before_making_anything(capsys: pytest.CaptureFixture[str]):
    assert main(["run", "--record", "--accel", "kvm", "--dry-run"]) == EXIT_HARNESS
    assert "needs TCG" in capsys.readouterr().err


@needs_qemu_img
def test_run_record_with_the_fake_qemu_writes_the_record_and_prints_the_replay_command(
    fake_qemu: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    import dataclasses
    from types import SimpleNamespace

    from harness.vm.arch import ARCH_PROFILES

    (tmp_path / "vmlinuz").write_bytes(b"fake kernel")
    (tmp_path / "initrd").write_bytes(b"fake initrd")
    image = SimpleNamespace(
        arch="aarch64", kernel=tmp_path / "vmlinuz", initramfs=tmp_path / "initrd"
    )
    # The QEMU binary comes from the architecture's profile: the fake one stands in for it.
    aarch64 = dataclasses.replace(ARCH_PROFILES["aarch64"], qemu_binary=str(fake_qemu))
    monkeypatch.setitem(ARCH_PROFILES, "aarch64", aarch64)
    monkeypatch.setattr("harness.cli.common.ensure_guest_image", lambda arch, out: image)
    monkeypatch.setenv("FAKE_QEMU_MODE", "contract")
    runs = tmp_path / "runs"
    args = ["--runs-dir", str(runs), "--profile", "record", "--boots", "1"]
    code = main(["run", *args, "--kernel-arg", "sq.extra=1"])
    out = capsys.readouterr().out
    (run_dir,) = runs.iterdir()
    assert code == 0, out
    assert f"replay a boot: python -m harness replay {run_dir} --boot 1" in out
    summary = json.loads((run_dir / "run.json").read_text())
    argv = summary["boots"][0]["argv"]
    assert argv[argv.index("-icount") + 1].startswith("shift=auto,rr=record,rrfile=")
    kernel_args = argv[argv.index("-append") + 1].split()
    assert "sq.extra=1" in kernel_args and kernel_args[-1] == "nokaslr"
    (boot,) = summary["record"]["boots"]
    assert boot["overlay"]["path"] == "record/boot1.qcow2"
    assert boot["console"]["sha256"] == sha256_file(run_dir / "boot1" / "uart.log")
    assert boot["rrfile"] is None  # the fake QEMU writes no replay log...
    assert main(["replay", str(run_dir)]) == EXIT_HARNESS  # ...so there is nothing to replay
    assert "boot 1 left no rrfile" in capsys.readouterr().out
