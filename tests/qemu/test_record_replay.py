"""QEMU record/replay on the real guest: a recorded boot replays to the same console, byte for
byte; a failing boot replays to the same failure line; a damaged record is refused.

The failing boot is contract boot 1 with ``sq.fail=statefs-persist``: the selftest fails that
proof on purpose and prints ``SELFTEST: statefs persist FAIL``; the harness stops the boot half a
second later unless the guest powered off first, so its record may end mid-run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.contract.runner import ContractRunner, RunOptions, contract_config
from harness.contract.spec import Contract
from harness.image import ensure_image
from harness.vm.disks import create_disk
from harness.vm.recording import RunRecorder
from harness.vm.replayer import replay_boot
from harness.vm.replaying import RecordError, check_boot, load_boot

pytestmark = pytest.mark.qemu


def record(run_dir: Path, boots: tuple[int, ...], *kernel_args: str):
    disk = create_disk(run_dir / "disk.img", 16)
    config = contract_config(ensure_image(), disk, accel="tcg").with_kernel_args(*kernel_args)
    runner = ContractRunner(
        config,
        Contract.load(),
        run_dir=run_dir,
        options=RunOptions(boots=boots, multiplier=2.0),
        recorder=RunRecorder(run_dir, config),
    )
    return runner.run()


def evidence(result) -> str:
    """Why a replay did not match: where, how it ended, and what QEMU said."""
    where = result.divergence.describe() if result.divergence else "no divergence"
    stderr = result.artifacts.qemu_stderr.read_text(errors="replace")[-2000:]
    return f"{where}\nended: {result.ended} after {result.seconds:.1f} s\nqemu.stderr: {stderr}"


@pytest.fixture(scope="module")
def recorded_boot_one(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("recorded")
    result = record(run_dir, (1,))
    assert result.passed, result.report()
    return run_dir


def test_a_recorded_contract_boot_replays_to_an_identical_console(recorded_boot_one: Path):
    boot = load_boot(recorded_boot_one, 1)
    check_boot(boot)
    result = replay_boot(boot)
    assert result.divergence is None, evidence(result)
    assert b"SELFTEST: boot 1 complete" in result.replayed
    assert len(result.replayed) == len(result.recorded) > 1000


def test_a_damaged_replay_log_is_refused_before_qemu_starts(recorded_boot_one: Path):
    rrfile = recorded_boot_one / "record" / "boot1.rr"
    data = bytearray(rrfile.read_bytes())
    data[len(data) // 2] ^= 0xFF
    rrfile.write_bytes(bytes(data))
    with pytest.raises(RecordError, match="record damaged: boot 1 replay log"):
        check_boot(load_boot(recorded_boot_one, 1))


def test_a_failing_boot_replays_to_the_same_failure_line(tmp_path: Path):
    result = record(tmp_path, (1,), "sq.fail=statefs-persist")
    assert not result.passed
    failure = result.boots[0].matcher.failure
    assert failure is not None
    assert failure.line == "SELFTEST: statefs persist FAIL on purpose (sq.fail)"
    boot = load_boot(tmp_path)  # the failing boot by default
    assert boot.number == 1  # the record ends at the guest's power-off or the harness's quit
    check_boot(boot)
    replay = replay_boot(boot)
    assert failure.line.encode() in replay.replayed, evidence(replay)
    assert replay.divergence is None, evidence(replay)
