"""KVM when it works for the guest's arch, TCG otherwise - decided with a reason."""

from pathlib import Path

import pytest
from harness_helpers import requires_qemu_binary

from harness.errors import AccelUnavailable
from harness.vm.accel import choose_accel, host_arch, probe_kvm_device
from harness.vm.config import MachineConfig
from harness.vm.machine import Machine


def test_foreign_guest_arch_falls_back_to_tcg_without_probing():
    probed = []
    choice = choose_accel("aarch64", host=lambda: "x86_64", probe=lambda: probed.append(1))
    assert choice.name == "tcg"
    assert "guest arch aarch64 differs from host arch x86_64" in choice.reason
    assert probed == []


def test_same_arch_with_unusable_dev_kvm_falls_back_to_tcg():
    choice = choose_accel(
        "x86_64", host=lambda: "x86_64", probe=lambda: "cannot open /dev/kvm: Permission denied"
    )
    assert choice.name == "tcg"
    assert "Permission denied" in choice.reason


def test_same_arch_with_working_kvm_uses_kvm():
    choice = choose_accel("aarch64", host=lambda: "aarch64", probe=lambda: None)
    assert choice.is_kvm


def test_forced_kvm_that_cannot_work_raises_with_the_reason():
    with pytest.raises(AccelUnavailable, match="differs from host arch"):
        choose_accel("aarch64", "kvm", host=lambda: "x86_64", probe=lambda: None)


def test_forced_tcg_never_probes():
    assert choose_accel("x86_64", "tcg", host=lambda: "x86_64", probe=lambda: None).name == "tcg"


def test_probe_reports_a_missing_device(tmp_path: Path):
    assert "cannot open" in (probe_kvm_device(str(tmp_path / "nokvm")) or "")


def test_this_host_runs_aarch64_guests_under_tcg():
    """The measured fact: an x86_64 host with /dev/kvm still runs aarch64 guests on TCG."""
    choice = choose_accel("aarch64")
    if host_arch() == "aarch64" and probe_kvm_device() is None:
        pytest.skip("this host can run aarch64 guests under KVM")
    assert choice.name == "tcg"


@requires_qemu_binary
def test_real_qemu_confirms_the_tcg_fallback(runs_dir: Path):
    """QEMU itself, asked over QMP, reports that KVM is not in use (no image needed)."""
    machine = Machine(MachineConfig(machine="none"), name="accel", artifacts_root=runs_dir)
    with machine:
        assert machine.accel is not None
        if machine.accel.is_kvm:
            pytest.skip("KVM works here for aarch64")
        assert machine.qmp.query_kvm()["enabled"] is False
        assert machine.argv[machine.argv.index("-accel") :][:2] == ["-accel", "tcg"]
