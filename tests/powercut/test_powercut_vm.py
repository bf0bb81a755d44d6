"""A short power-cut campaign in real VMs, through the documented command.

Six cuts (seven boots), one of each scheduled trigger (format, recovery, compaction, flush,
dirty, time), take about a minute under TCG; the deep campaign (100 cycles) is the documented
command in docs/testing/powercut.md. The campaign runs as a subprocess, as a
developer or CI would run it, so its exit code, its table and its cleanup are what is tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.powercut.triggers import TRIGGERS

REPO = Path(__file__).resolve().parents[2]
CYCLES = 6
SEED = 20240601


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (a run directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and str(os.getpid()) != entry.name:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


@pytest.mark.qemu
def test_short_power_cut_campaign_loses_nothing(guest_image, qemu_settings, tmp_path: Path):
    runs = tmp_path / "runs"
    argv = [
        sys.executable,
        "-m",
        "harness",
        "powercut",
        "--cycles",
        str(CYCLES),
        "--seed",
        str(SEED),
        "--cut-window",
        "0.05:1.5",
        "--keep-artifacts",
        "--runs-dir",
        str(runs),
        "--arch",
        qemu_settings.arch,
        "--accel",
        qemu_settings.accel,
        "--timeout-multiplier",
        str(qemu_settings.multiplier),
    ]
    result = subprocess.run(
        argv,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=qemu_settings.scale(600),
        check=False,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"power-cut campaign PASSED: {CYCLES} cycles, 0 losses" in result.stdout

    (run_dir,) = runs.iterdir()
    report = json.loads((run_dir / "powercut.json").read_text())
    assert report["seed"] == SEED
    assert report["passed"] is True
    assert report["losses"] == 0
    cycles = report["cycles"]
    assert [c["cycle"] for c in cycles] == list(range(1, CYCLES + 1))
    for cycle in cycles:
        assert cycle["verdict"] == "pass", cycle
        assert cycle["recovered"] >= (cycle["acked"] or 0)
        assert cycle["recovered"] <= max(cycle["start"], cycle["issued"] or 0)
        assert cycle["cut_at"] is not None
        assert cycle["cut_trigger"] in (cycle["scheduled"], "time"), cycle
    assert {c["scheduled"] for c in cycles} == set(TRIGGERS)
    assert cycles[0]["cut_trigger"] == "format"  # the blank disk's format is always caught
    assert sum(c["writes_acked"] for c in cycles) > 0
    for number in range(1, CYCLES + 2):  # the last boot only checks
        assert (run_dir / f"boot{number}" / "uart.log").is_file()
        assert (run_dir / "nbdkit" / f"boot{number}.log").is_file()
    assert list((run_dir / "cache").iterdir()) == []  # every cut was resolved
    assert processes_mentioning(str(run_dir)) == []  # no QEMU, no nbdkit left behind


@pytest.mark.qemu
def test_a_disk_that_forgets_synced_writes_is_caught(
    guest_image, qemu_settings, tmp_path: Path, monkeypatch
):
    """Keep the verdict honest: a 'disk' that loses everything at the cut must be a LOSS."""
    from harness.powercut import campaign
    from harness.powercut.verdict import Verdict

    honest_resolve = campaign.resolve

    def forgetful_resolve(state_dir, backing, rng, kinds):
        resolution = honest_resolve(state_dir, backing, rng, kinds)
        size = backing.stat().st_size
        backing.write_bytes(bytes(size))  # every synced write gone
        return resolution

    monkeypatch.setattr(campaign, "resolve", forgetful_resolve)
    options = campaign.CampaignOptions(
        cycles=1,
        seed=SEED,
        cut_window=(1.0, 1.5),
        triggers=("time",),
        accel=qemu_settings.accel,
        multiplier=qemu_settings.multiplier,
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = campaign.run_campaign(guest_image, options, run_dir=run_dir)
    (cycle,) = result.cycles
    assert cycle.verdict is Verdict.LOSS, cycle
    assert cycle.acked is not None
    assert cycle.acked > 0
    assert cycle.reason == f"acknowledged write {cycle.acked} is missing: recovered head 0"
    assert not result.passed
    assert result.losses == 1
    assert run_dir.is_dir()  # a failed campaign keeps its evidence
    evidence = cycle.evidence(run_dir)
    assert "SELFTEST: powercut recover ok head=0" in evidence
    assert f"POWERCUT: acked {cycle.acked}" in evidence
    assert processes_mentioning(str(run_dir)) == []
