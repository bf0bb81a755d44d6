"""``python -m harness crash-states`` in real VMs, through the documented command: one recorded
guest run (450 synced batches on a 640 KiB disk, compacting every ~180), every crash state of
its log judged by the host (>= 10,000), one booted in the VM. About a minute under TCG.

It runs as a subprocess, as CI would, so the exit code, the table, the one closing line and the
report are what is tested.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(r"^guest crash states: ([\d,]+) judged, (\d+) booted, ([\d,]+) failures$")


@pytest.mark.qemu
def test_default_run_judges_ten_thousand_states_and_boots_one(
    guest_image, qemu_settings, tmp_path: Path
):
    report = tmp_path / "crash-states.json"
    argv = [sys.executable, "-m", "harness", "crash-states", "--seed", "7"]
    argv += ["--runs-dir", str(tmp_path / "runs"), "--report", str(report)]
    argv += ["--arch", qemu_settings.arch, "--accel", qemu_settings.accel]
    argv += ["--timeout-multiplier", str(qemu_settings.multiplier)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    match = SUMMARY.match(lines[-1])
    assert match, lines[-5:]
    judged, booted, failures = (int(group.replace(",", "")) for group in match.groups())
    assert judged >= 10_000 and booted >= 1 and failures == 0
    data = json.loads(report.read_text())
    (run,) = data["runs"]
    assert run["compactions"] >= 1 and run["writes"] == 450
    assert run["judged"] == judged and all(run["kinds"][kind] for kind in run["kinds"])
