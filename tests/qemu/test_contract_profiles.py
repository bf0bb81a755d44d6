"""The contract's lanes in the real VM: ``default``, ``smp2`` and ``icount``, each through the
command line CI uses, each writing a JUnit file that a JUnit reader accepts.

To keep ``make test`` short each lane runs boot 1 of the contract to the guest's power-off
(about 6 s under TCG; ``-icount shift=auto`` costs nothing more); the two-boot sequence runs
in the other VM tests and in ``make qemu-test``.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import JUnitXml

REPO = Path(__file__).resolve().parents[2]


def run_lane(tmp_path: Path, profile: str) -> tuple[subprocess.CompletedProcess, dict, Path]:
    junit = tmp_path / "junit.xml"
    runs = tmp_path / "runs"
    argv = [sys.executable, "-m", "harness", "run", "--profile", profile, "--boots", "1"]
    argv += ["--runs-dir", str(runs), "--junit", str(junit)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    (run_dir,) = runs.iterdir()
    return done, json.loads((run_dir / "run.json").read_text()), junit


@pytest.mark.qemu
@pytest.mark.parametrize(
    ("profile", "expect_argv", "required_extra"),
    [
        ("default", ["-smp", "1", "-m", "512"], set()),
        ("smp2", ["-smp", "2"], set()),
        ("icount", ["-icount", "shift=auto"], {"init-done", "selftest-complete"}),
    ],
)
def test_profile_lane_passes_boot_one(
    tmp_path: Path, profile: str, expect_argv: list[str], required_extra: set[str]
):
    done, summary, junit = run_lane(tmp_path, profile)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    (boot,) = summary["boots"]
    assert summary["profile"] == profile
    argv = boot["argv"]
    flag = expect_argv[0]
    assert argv[argv.index(flag) : argv.index(flag) + len(expect_argv)] == expect_argv
    assert boot["exit"]["reason"] == "guest-shutdown"
    (suite,) = list(JUnitXml.fromfile(str(junit)))
    cases = {case.name: case for case in suite}
    assert suite.failures == 0
    for marker_id in {"init-started", "blk", "statefs-persist", *required_extra}:
        assert cases[marker_id].is_passed, marker_id
        assert cases[marker_id].time == pytest.approx(boot["markers"][marker_id]["at"], abs=1e-3)
    print(
        f"{profile}: power-off at {boot['exit']['at']:.2f} s, statefs-persist at "
        f"{boot['markers']['statefs-persist']['at']:.2f} s"
    )
