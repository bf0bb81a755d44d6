"""JUnit per marker, read back with junitparser (a maintained JUnit reader, as CI uses), and the
``run`` options that produce it: ``--junit``, ``--profile``, ``--until-phase`` (fake QEMU)."""

import dataclasses
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from harness_helpers import TRANSCRIPTS, transcript
from junitparser import Failure, JUnitXml, Skipped

from harness import cli
from harness.contract.junit import OUTCOME_CASE, JunitBoot, write_junit
from harness.contract.matcher import BootMatcher, Outcome
from harness.contract.spec import Contract
from harness.errors import ConfigError
from harness.vm.arch import ARCH_PROFILES
from harness.vm.config import MachineConfig

REPO = Path(__file__).resolve().parents[2]
CONTRACT = Contract.load()


def replay_lines(number: int, text: str, pins=None) -> BootMatcher:
    matcher = BootMatcher(CONTRACT.for_boot(number), pinned=pins)
    for index, line in enumerate(text.splitlines()):
        matcher.feed_line(line, 1.0 + index * 0.1)
    matcher.finish("end of transcript")
    return matcher


def suites_by_name(path: Path) -> dict:
    xml = JUnitXml.fromfile(str(path))
    return {suite.name: suite for suite in xml}


def cases(suite) -> dict:
    return {case.name: case for case in suite}


def test_a_passing_boot_is_a_suite_of_passing_marker_cases(tmp_path: Path):
    boot1 = replay_lines(1, transcript("boot1_pass.log"))
    boot2 = replay_lines(2, transcript("boot2_pass.log"), boot1.pins_for_next_boot())
    path = write_junit(
        tmp_path / "junit.xml",
        [JunitBoot(1, boot1, duration=2.7), JunitBoot(2, boot2, duration=3.0)],
        CONTRACT,
        expected_boots=[1, 2],
        properties={"nonce": "0123456789abcdef", "profile": "default"},
    )
    suites = suites_by_name(path)
    assert list(suites) == ["boot1", "boot2"]
    first = suites["boot1"]
    assert (first.failures, first.errors) == (0, 0)
    assert first.time == pytest.approx(2.7)
    by_name = cases(first)
    # One case per contract marker of the boot, plus the policy cases and the boot outcome.
    assert {m.id for m in CONTRACT.for_boot(1).markers} <= set(by_name)
    assert "reboot-persist" not in by_name  # a boot-2 marker
    assert "reboot-persist" in cases(suites["boot2"])
    assert {"forbidden:reformatted", "strict:SELFTEST:", OUTCOME_CASE} <= set(
        cases(suites["boot2"])
    )
    blk = by_name["blk"]
    assert blk.is_passed
    assert blk.time == pytest.approx(boot1.arrivals["blk"].at)
    assert blk.system_out == "blk: virtio-blk up (ss=512 nsec=131072)"
    assert by_name["powercut-recover"].is_skipped  # optional, never printed in a contract boot
    props = {p.name: p.value for p in first.properties()}
    assert props["outcome"] == "passed"
    assert props["nonce"] == "0123456789abcdef"


def test_a_failed_boot_names_the_marker_the_failure_line_and_skips_boot_2(tmp_path: Path):
    boot1 = replay_lines(1, transcript("boot1_selftest_fail.log"))
    assert boot1.outcome is Outcome.FAILED
    path = write_junit(tmp_path / "j.xml", [JunitBoot(1, boot1)], CONTRACT, expected_boots=[1, 2])
    suites = suites_by_name(path)
    first = suites["boot1"]
    failed = {c.name: c for c in first if c.is_failure}
    assert set(failed) == {m.id for m in boot1.missing} | {OUTCOME_CASE}
    missing = failed[boot1.missing[0].id].result[0]
    assert isinstance(missing, Failure)
    assert missing.type == "missing"
    assert missing.message == f"missing: {boot1.missing[0].pattern.display}"
    assert boot1.failure.line in missing.text  # the failure line
    assert "phase 'store' failed first" in missing.text
    assert "console excerpt" in missing.text
    assert cases(first)[OUTCOME_CASE].result[0].message.startswith("FAILED: failure pattern")
    second = suites["boot2"]
    assert second.skipped == second.tests > 0
    skipped = cases(second)["reboot-persist"].result[0]
    assert isinstance(skipped, Skipped)
    assert skipped.message == "not run: boot 1 did not pass"


def test_a_forbidden_line_fails_its_own_case(tmp_path: Path):
    boot1 = replay_lines(1, transcript("boot1_pass.log"))
    text = transcript("boot2_pass.log").replace(
        "statefsd: ready", "statefsd: formatted /dev/vda (it held no store)\nstatefsd: ready", 1
    )
    boot2 = replay_lines(2, text, boot1.pins_for_next_boot())
    path = write_junit(tmp_path / "j.xml", [JunitBoot(1, boot1), JunitBoot(2, boot2)], CONTRACT)
    case = cases(suites_by_name(path)["boot2"])["forbidden:reformatted"]
    assert case.is_failure
    assert case.result[0].type == "forbidden"
    assert "statefsd: formatted /dev/vda" in case.result[0].text


# -- through the command line, with the fake QEMU -------------------------------------------------
@pytest.fixture
def fake_image(fake_qemu: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``run`` boots the fake QEMU: the image lookup returns a stand-in naming it."""
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd"
    kernel.write_bytes(b"fake kernel")
    initrd.write_bytes(b"fake initrd")
    image = SimpleNamespace(arch="aarch64", kernel=kernel, initramfs=initrd)
    # The QEMU binary comes from the architecture's profile: the fake one stands in for it.
    aarch64 = dataclasses.replace(ARCH_PROFILES["aarch64"], qemu_binary=str(fake_qemu))
    monkeypatch.setitem(ARCH_PROFILES, "aarch64", aarch64)
    monkeypatch.setattr(
        "harness.cli.common.ensure_guest_image", lambda arch, out, image_dir=None: image
    )
    monkeypatch.setenv("FAKE_QEMU_MODE", "contract")
    monkeypatch.delenv("QEMU_TIMEOUT_MULTIPLIER", raising=False)
    return image


def run_cli(tmp_path: Path, *extra: str) -> tuple[int, Path, dict]:
    runs = tmp_path / "runs"
    junit = tmp_path / "out" / "junit.xml"
    code = cli.main(["run", "--runs-dir", str(runs), "--junit", str(junit), *extra])
    (run_dir,) = runs.iterdir()
    return code, junit, json.loads((run_dir / "run.json").read_text())


def test_run_junit_of_a_passing_fake_run(fake_image, tmp_path: Path):
    code, junit, summary = run_cli(tmp_path, "--profile", "smp2")
    assert code == cli.EXIT_PASSED
    suites = suites_by_name(junit)
    assert list(suites) == ["boot1", "boot2"]
    assert sum(s.failures for s in suites.values()) == 0
    boot1 = summary["boots"][0]
    assert cases(suites["boot1"])["statefsd-ready"].time == pytest.approx(
        boot1["markers"]["statefsd-ready"]["at"], abs=1e-3
    )
    assert summary["profile"] == "smp2"
    argv = boot1["argv"]
    assert argv[argv.index("-smp") + 1] == "2"
    assert {p.name: p.value for p in suites["boot2"].properties()}["profile"] == "smp2"


def test_run_junit_of_a_failing_fake_run(fake_image, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_FAIL", "SELFTEST: statefs persist ok")
    code, junit, _ = run_cli(tmp_path)
    assert code == cli.EXIT_FAILED
    suites = suites_by_name(junit)
    case = cases(suites["boot1"])["statefs-persist"]
    assert case.is_failure
    assert "SELFTEST: statefs persist FAIL: injected" in case.result[0].text
    assert suites["boot2"].skipped == suites["boot2"].tests


def test_icount_profile_puts_icount_on_the_command_line(fake_image, tmp_path: Path):
    code, _, summary = run_cli(
        tmp_path, "--profile", "icount", "--boots", "1", "--until-phase", "store"
    )
    argv = summary["boots"][0]["argv"]
    assert argv[argv.index("-icount") + 1] == "shift=auto"
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert code == cli.EXIT_PASSED


def test_until_phase_stops_the_first_boot_once_that_phase_is_complete(
    fake_image, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("FAKE_QEMU_LINGER", "30")  # the guest would power off only after 30 s
    started = time.monotonic()
    code, junit, summary = run_cli(tmp_path, "--until-phase", "services")
    assert code == cli.EXIT_PASSED
    assert time.monotonic() - started < 25
    assert summary["expected_boots"] == [1]
    assert summary["until_phase"] == "services"
    (boot,) = summary["boots"]
    assert boot["exit"]["reason"] == "host-qmp-quit"  # stopped by the harness, not powered off
    assert "init-done" not in boot["markers"]
    suite = suites_by_name(junit)["boot1"]
    assert cases(suite)["statefsd-ready"].is_passed
    assert list(suites_by_name(junit)) == ["boot1"]


def test_a_caller_setting_that_contradicts_the_profile_is_an_error(
    fake_image, tmp_path: Path, capsys, monkeypatch
):
    assert cli.main(["run", "--profile", "smp2", "--smp", "4", "--dry-run"]) == cli.EXIT_HARNESS
    assert "--smp 4 contradicts profile 'smp2'" in capsys.readouterr().err
    monkeypatch.setenv("QEMU_TIMEOUT_MULTIPLIER", "2")
    contract = tmp_path / "c.toml"
    text = (REPO / "harness/contract/contract.toml").read_text()
    contract.write_text(text + '\n[profile.slow]\nextends = "default"\ntimeout_multiplier = 3\n')
    args = ["run", "--contract", str(contract), "--profile", "slow", "--dry-run"]
    assert cli.main(args) == cli.EXIT_HARNESS
    assert "timeout multiplier 2.0 contradicts profile 'slow'" in capsys.readouterr().err
    assert cli.main(["run", "--profile", "nope", "--dry-run"]) == cli.EXIT_HARNESS
    assert "no profile 'nope'" in capsys.readouterr().err
    assert cli.main(["run", "--until-phase", "nope", "--dry-run"]) == cli.EXIT_HARNESS
    assert "no phase 'nope'" in capsys.readouterr().err


def test_qemu_test_script_maps_junit_phase_and_profile_from_the_environment(tmp_path: Path):
    env = {
        **os.environ,
        "JUNIT_XML": str(tmp_path / "j.xml"),
        "RUN_PHASE": "store",
        "RUN_PROFILE": "icount",
    }
    env.pop("QEMU_TIMEOUT_MULTIPLIER", None)
    out = subprocess.run(
        [str(REPO / "scripts/qemu-test.sh"), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "profile: icount (smp 1, 512 MiB, -icount shift=auto" in out
    assert "until phase: store" in out
    assert f"junit: {tmp_path / 'j.xml'}" in out
    assert "boot 2" not in out  # the store phase completes in boot 1


def test_markers_writes_junit_for_a_recorded_run(tmp_path: Path, capsys):
    run = shutil.copytree(TRANSCRIPTS / "real_run", tmp_path / "run")
    junit = tmp_path / "replayed.xml"
    assert cli.main(["markers", str(run), "--junit", str(junit)]) == cli.EXIT_PASSED
    assert f"junit: {junit}" in capsys.readouterr().out
    suites = suites_by_name(junit)
    assert list(suites) == ["boot1", "boot2"]
    assert suites["boot1"].time == pytest.approx(5.240, abs=1e-3)  # its last console line
    assert cases(suites["boot2"])["reboot-persist"].time == pytest.approx(5.606, abs=1e-3)


def test_icount_is_tcg_only():
    config = MachineConfig(icount="shift=auto")
    assert config.accel == "tcg"  # "auto" may only choose TCG
    with pytest.raises(ConfigError, match="icount needs TCG"):
        MachineConfig(icount="shift=auto", accel="kvm")
    with pytest.raises(ConfigError, match="shift=auto"):
        MachineConfig(icount="shift auto")


def test_junit_of_an_interrupted_run_comes_from_its_recorded_console(tmp_path: Path):
    """Ctrl-C leaves no live result: ``run --junit`` falls back to the run directory."""
    from harness.cli.lanes import Lane, junit_from_replay
    from harness.contract.profiles import Settings

    run = tmp_path / "run"
    (run / "boot1").mkdir(parents=True)
    lines = (TRANSCRIPTS / "real_run/boot1/uart.timestamps").read_text().splitlines()
    (run / "boot1/uart.timestamps").write_text("\n".join(lines[:12]) + "\n")  # cut short
    lane = Lane(CONTRACT.with_profile("default"), Settings())
    # The summary may be written before the interrupted boot is recorded in it.
    (run / "run.json").write_text(json.dumps({"boots": [], "expected_boots": [1, 2]}))
    path = junit_from_replay(tmp_path / "j.xml", lane, run, [1, 2])
    suites = suites_by_name(path)
    first = cases(suites["boot1"])
    assert first["statefs-put"].is_passed
    assert first["statefs-persist"].is_failure  # never printed before the interruption
    assert suites["boot2"].skipped == suites["boot2"].tests
    (tmp_path / "empty").mkdir()  # the run directory of a run stopped before its first boot
    assert junit_from_replay(tmp_path / "none.xml", lane, tmp_path / "empty", [1]) is None
