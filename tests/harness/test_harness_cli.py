"""The command line: a thin layer, tested without booting (the VM tests boot through it)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from harness_helpers import TRANSCRIPTS

from harness import cli

REPO = Path(__file__).resolve().parents[2]


def test_markers_view_of_a_recorded_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    run = shutil.copytree(TRANSCRIPTS / "real_run", tmp_path / "run")
    assert cli.main(["markers", str(run)]) == cli.EXIT_PASSED
    out = capsys.readouterr().out
    assert "boot 1 (" in out
    assert "boot 2 (" in out
    assert "PASSED" in out
    assert "SELFTEST: reboot persist ok" in out
    assert "ok     3.08 s  blk: virtio-blk up (ss=512 nsec=131072)" in out


def test_markers_view_names_what_was_missing_and_the_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    boot = tmp_path / "run" / "boot1"
    boot.mkdir(parents=True)
    shutil.copy(TRANSCRIPTS / "boot1_selftest_fail.log", boot / "uart.log")
    assert cli.main(["markers", str(tmp_path / "run")]) == cli.EXIT_FAILED
    out = capsys.readouterr().out
    assert "failure line 6" in out
    assert "arrival times unknown" in out  # no uart.timestamps, only uart.log
    assert "boots without a console record: 2" in out


def test_markers_view_of_a_lone_uart_log_with_a_boot_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    log = tmp_path / "uart.log"
    shutil.copy(TRANSCRIPTS / "real_boot2.uart.log", log)
    assert cli.main(["markers", str(log), "--boot", "2"]) == cli.EXIT_PASSED
    assert "reboot persist ok" in capsys.readouterr().out


def test_markers_without_any_run_is_a_clear_error(
    tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("SQ_BUILD_DIR", str(tmp_path))
    assert cli.main(["markers"]) == cli.EXIT_HARNESS
    assert "no runs under" in capsys.readouterr().err


def test_run_dry_run_shows_both_boots_with_one_nonce(capsys: pytest.CaptureFixture[str]):
    assert (
        cli.main(
            [
                "run",
                "--dry-run",
                "--timeout",
                "2m",
                "--timeout-multiplier",
                "2",
                "--nonce",
                "00112233445566ff",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "run timeout: 120 s" in out
    assert (
        "boot 1: timeout 150 s, 10 required markers, kernel args: sq.mode=contract "
        "sq.boot=1 sq.nonce=00112233445566ff"
    ) in out
    assert "sq.boot=2 sq.nonce=00112233445566ff" in out


def test_riscv64_run_scales_the_contract_timeouts_by_its_tcg_slowdown(
    monkeypatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("QEMU_TIMEOUT_MULTIPLIER", raising=False)
    assert cli.main(["run", "--dry-run", "--arch", "riscv64", "--nonce", "00ff00ff00ff00ff"]) == 0
    out = capsys.readouterr().out
    assert "timeout multiplier: 2" in out
    assert "boot 1: timeout 150 s" in out  # 75 s in the contract, x2 for riscv64


def test_bad_multiplier_in_the_environment_names_it(
    monkeypatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("QEMU_TIMEOUT_MULTIPLIER", "fast")
    assert cli.main(["run", "--dry-run"]) == cli.EXIT_HARNESS
    assert "$QEMU_TIMEOUT_MULTIPLIER" in capsys.readouterr().err


def test_image_command_is_delegated_verbatim(monkeypatch):
    seen = []
    import harness.image

    monkeypatch.setattr(harness.image, "main", lambda argv: seen.append(argv) or 7)
    assert cli.main(["image", "--help", "--arch", "aarch64"]) == 7
    assert seen == [["--help", "--arch", "aarch64"]]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"RUN_UNTIL_MARKER": "1", "RUN_TIMEOUT": "90s"},
            ["until marker: yes", "run timeout: 90 s"],
        ),
        ({"RUN_TIMEOUT": "2m"}, ["until marker: no", "run timeout: 120 s"]),
        ({}, ["run timeout: none"]),
    ],
)
def test_qemu_test_script_maps_the_environment(env, expected):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RUN_UNTIL_MARKER", "RUN_TIMEOUT", "QEMU_TIMEOUT_MULTIPLIER"}
    }
    result = subprocess.run(
        [str(REPO / "scripts" / "qemu-test.sh"), "--dry-run"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for line in expected:
        assert line in result.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RUN_TIMEOUT": "soon"}, "invalid duration 'soon'"),
        ({"RUN_UNTIL_MARKER": "maybe"}, "RUN_UNTIL_MARKER must be 1 or 0"),
    ],
)
def test_qemu_test_script_rejects_bad_settings(env, message):
    result = subprocess.run(
        [str(REPO / "scripts" / "qemu-test.sh"), "--dry-run"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_qemu_test_script_without_a_venv_says_what_to_do(tmp_path: Path):
    result = subprocess.run(
        [str(REPO / "scripts" / "qemu-test.sh")],
        env={**os.environ, "VENV": str(tmp_path / "novenv")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "run ./scripts/setup-host.sh" in result.stderr
