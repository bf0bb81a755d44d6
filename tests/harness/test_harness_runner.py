"""Boot sequences: the two-boot contract, until-marker, short-circuit, timeouts (fake QEMU)."""

import json
import time
from pathlib import Path

import pytest

from harness.contract.matcher import BootMatcher, Outcome
from harness.contract.runner import ContractRunner, RunOptions, run_boot
from harness.contract.spec import BootContract, Contract
from harness.deadline import Deadline
from harness.vm.disks import create_disk
from harness.vm.machine import Machine


@pytest.fixture
def contract_config(fake_config):
    def make(**env):
        return fake_config("contract", disk=True, kernel_args=("console=ttyAMA0",), **env)

    return make


def run(config, run_dir: Path, **options) -> tuple:
    events = []
    runner = ContractRunner(
        config,
        Contract.load(),
        run_dir=run_dir,
        options=RunOptions(**options),
        progress=events.append,
    )
    return runner.run(), events


def test_two_boots_pass_and_carry_the_device_key_across(contract_config, runs_dir: Path):
    result, events = run(contract_config(), runs_dir, nonce="0123456789abcdef")
    assert result.passed, result.report()
    assert [b.number for b in result.boots] == [1, 2]
    first, second = result.boots
    key1 = first.matcher.arrivals["device-key"].groups
    key2 = second.matcher.arrivals["device-key"].groups
    assert key1["fingerprint"] == key2["fingerprint"]
    assert (key1["origin"], key2["origin"]) == ("created", "loaded")
    assert "reboot-persist" in second.matcher.arrivals
    for boot in result.boots:
        assert boot.exit is not None
        assert boot.exit.guest_powered_off
        append = boot.argv[boot.argv.index("-append") + 1]
        assert f"sq.boot={boot.number}" in append
        assert "sq.nonce=0123456789abcdef" in append
        assert "sq.mode=contract" in append
    summary = json.loads((runs_dir / "run.json").read_text())
    assert summary["passed"] is True
    assert summary["nonce"] == "0123456789abcdef"
    assert [b["outcome"] for b in summary["boots"]] == ["passed", "passed"]
    assert summary["boots"][1]["markers"]["reboot-persist"]["line"] == (
        "SELFTEST: reboot persist ok"
    )
    assert {e.kind for e in events} >= {"marker", "complete"}
    assert "marker contract PASSED" in result.report()


def test_a_random_nonce_is_shared_by_both_boots(contract_config, runs_dir: Path):
    result, _ = run(contract_config(), runs_dir)
    nonces = {
        a.split("sq.nonce=")[1].split()[0]
        for a in (b.argv[b.argv.index("-append") + 1] for b in result.boots)
    }
    assert len(nonces) == 1
    (nonce,) = nonces
    assert len(nonce) == 16
    int(nonce, 16)


def test_until_marker_stops_the_last_boot_early_but_not_the_first(contract_config, runs_dir: Path):
    result, _ = run(contract_config(linger="0.8"), runs_dir, until_marker=True, timeout=60)
    assert result.passed, result.report()
    first, last = (boot.exit for boot in result.boots)
    assert first is not None
    assert last is not None
    # Boot 1 ran to its own power-off: boot 2 checks what it wrote.
    assert first.how == "exited"
    assert first.at >= 0.8
    # Boot 2 was stopped as soon as every marker was there, before its power-off.
    assert last.how == "quit"
    assert last.at < 0.8


def test_failure_short_circuits_long_before_the_timeout(contract_config, runs_dir: Path):
    config = contract_config(fail="SELFTEST: statefs persist ok", hang_after_fail="1")
    started = time.monotonic()
    result, events = run(config, runs_dir)
    elapsed = time.monotonic() - started
    assert not result.passed
    assert [b.number for b in result.boots] == [1]  # boot 2 never starts
    boot = result.boots[0]
    assert boot.outcome is Outcome.FAILED
    assert boot.matcher.failure is not None
    assert boot.matcher.failure.line == "SELFTEST: statefs persist FAIL: injected"
    assert elapsed < 5, f"took {elapsed:.1f} s; the boot timeout is 75 s"
    report = result.report()
    assert "failure line" in report
    assert "boots not run after the failure: 2" in report
    assert str(boot.artifacts.uart_log) in report
    assert any(e.kind == "failure" for e in events)


def test_run_timeout_names_the_missing_markers(fake_config, runs_dir: Path):
    config = fake_config(
        "normal",
        disk=True,
        kernel_args=("console=ttyAMA0",),
        console="init: started (python 3.11.2)\nstatefsd: ready",
    )
    started = time.monotonic()
    result, _ = run(config, runs_dir, timeout=0.5)
    assert time.monotonic() - started < 5
    boot = result.boots[0]
    assert boot.outcome is Outcome.TIMEOUT
    assert "run timeout: 0.5 s passed" in boot.matcher.reason
    assert "blk" in [m.id for m in boot.matcher.missing]
    assert "statefsd-ready" not in [m.id for m in boot.matcher.missing]


def test_power_off_before_every_marker_is_incomplete(fake_config, runs_dir: Path):
    config = fake_config(
        "poweroff", disk=True, kernel_args=("console=ttyAMA0",), console="statefsd: ready"
    )
    result, _ = run(config, runs_dir)
    boot = result.boots[0]
    assert boot.outcome is Outcome.INCOMPLETE
    assert "before every marker arrived" in boot.matcher.reason


def test_markers_without_power_off_fail_when_waiting_for_power_off(fake_config, runs_dir: Path):
    config = fake_config(console="A ok")
    matcher = BootMatcher(BootContract.of(["A ok"], timeout=1))
    machine = Machine(config, artifacts_root=runs_dir)
    result = run_boot(machine, matcher, Deadline(0.5, label="boot"), until="poweroff")
    assert result.outcome is Outcome.FAILED
    assert "did not power off within" in matcher.reason
    result_markers = run_boot(
        Machine(config, artifacts_root=runs_dir),
        BootMatcher(BootContract.of(["A ok"])),
        Deadline(5),
        until="markers",
    )
    assert result_markers.passed


def test_create_disk_is_sparse(tmp_path: Path):
    disk = create_disk(tmp_path / "d" / "disk.img", 64)
    assert disk.stat().st_size == 64 * 1024 * 1024
    assert disk.stat().st_blocks == 0
