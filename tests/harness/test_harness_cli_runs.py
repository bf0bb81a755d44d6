"""`python -m harness run|boot|markers` end to end against the fake QEMU (``--image-dir``).

The fake plays the guest's PID 1 (see fake_qemu.py): the contract boots, statefsd's refusal of
a disk that is neither blank nor formatted, a script payload that raises or exits, the reboot
check of boot 2. Each test here is one way a new user found the harness wanting.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness_helpers import fake_profile, make_image_dir

from harness import cli
from harness.errors import DiskInUse
from harness.vm.config import DiskSpec
from harness.vm.disklock import hold_disks

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def image_dir(tmp_path: Path, fake_qemu: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAKE_QEMU_MODE", "contract")
    monkeypatch.delenv("QEMU_TIMEOUT_MULTIPLIER", raising=False)
    fake_profile(monkeypatch, str(fake_qemu))
    return make_image_dir(tmp_path / "image")


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def harness(image_dir: Path, runs: Path, command: str, *args: str) -> int:
    return cli.main(
        [command, "--image-dir", str(image_dir), "--runs-dir", str(runs), "--accel", "tcg", *args]
    )


def only_run(runs: Path) -> Path:
    (run,) = [path for path in runs.iterdir() if path.is_dir()]
    return run


def appended(argv: list[str]) -> str:
    return argv[argv.index("-append") + 1]


# -- a disk that is neither blank nor a statefs volume ----------------------------------------
def test_a_non_blank_disk_fails_the_run_naming_the_refusal(image_dir, runs, tmp_path, capsys):
    disk = tmp_path / "random.img"
    disk.write_bytes(os.urandom(1 << 20))
    before = disk.read_bytes()
    assert harness(image_dir, runs, "run", "--disk", str(disk)) == cli.EXIT_FAILED
    out = capsys.readouterr().out
    assert "marker contract FAILED (boot 1: failure pattern 'disk-refused' on line 2)" in out
    assert "statefsd: fatal EMEDIUMTYPE" in out
    assert "hint: statefsd refused the disk: it is neither blank nor a statefs volume" in out
    assert "--format-disk (kernel argument sq.format=force)" in out
    assert disk.read_bytes() == before  # nothing was formatted over


def test_format_disk_formats_it_on_the_first_boot_only(image_dir, runs, tmp_path, capsys):
    disk = tmp_path / "random.img"
    disk.write_bytes(os.urandom(1 << 20))
    assert harness(image_dir, runs, "run", "--disk", str(disk), "--format-disk") == 0
    assert "marker contract PASSED" in capsys.readouterr().out
    boots = json.loads((only_run(runs) / "run.json").read_text())["boots"]
    assert "sq.format=force" in appended(boots[0]["argv"])
    assert "sq.format=force" not in appended(boots[1]["argv"])


# -- boot --mode script: a failing script fails the command ----------------------------------
@pytest.mark.parametrize(
    ("source", "code", "said"),
    [
        ("print('fine')\n", cli.EXIT_PASSED, "script: PASSED"),
        (
            "1/0\n",
            cli.EXIT_FAILED,
            "failure line 2: init: fatal ZeroDivisionError: division by zero",
        ),
        (
            "raise SystemExit(3)\n",
            cli.EXIT_FAILED,
            "without 'init: done, powering off': the script raised or exited",
        ),
    ],
)
def test_boot_mode_script_exits_non_zero_when_the_script_fails(
    image_dir, runs, tmp_path, capsys, source, code, said
):
    script = tmp_path / "check.py"
    script.write_text(source)
    args = ("--mode", "script", "--script", str(script), "--no-input")
    assert harness(image_dir, runs, "boot", *args) == code
    assert said in capsys.readouterr().err


# -- replaying one boot of a past run ----------------------------------------------------------
def test_boot_2_of_a_past_run_replays_on_the_disk_boot_1_left(image_dir, runs, capsys):
    assert harness(image_dir, runs, "run") == cli.EXIT_PASSED
    run = only_run(runs)
    nonce = json.loads((run / "run.json").read_text())["nonce"]
    assert (run / "disk.before-boot2.img").is_file()
    capsys.readouterr()
    replay = ("--mode", "contract", "--boot", "2", "--from-run", str(run), "--no-input")
    assert harness(image_dir, runs / "replays", "boot", *replay) == cli.EXIT_PASSED
    out = capsys.readouterr().err
    assert "SELFTEST: reboot persist ok" in out
    assert "boot 2: PASSED" in out
    assert f"sq.nonce={nonce}" in next((runs / "replays").glob("*/boot2/qemu.argv")).read_text()
    # On the run's final disk boot 2 finds its own record: that is why the copy is kept.
    final = ("--mode", "contract", "--boot", "2", "--nonce", nonce, "--disk", str(run / "disk.img"))
    assert harness(image_dir, runs / "final", "boot", *final, "--no-input") == cli.EXIT_FAILED
    assert "reboot persist FAIL last record is from boot 2" in capsys.readouterr().err


# -- a past run's console replayed: same verdict as live -------------------------------------
def test_markers_replays_a_timeout_as_the_recorded_timeout(image_dir, runs, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_DELAY", "0.5")
    assert harness(image_dir, runs, "run", "--timeout", "1.5") == cli.EXIT_FAILED
    run = only_run(runs)
    assert json.loads((run / "run.json").read_text())["boots"][0]["outcome"] == "timeout"
    capsys.readouterr()
    assert cli.main(["markers", str(run)]) == cli.EXIT_FAILED
    out = capsys.readouterr().out
    assert "boot 1 (" in out
    assert "): TIMEOUT" in out
    assert "run timeout: 1.5 s passed (recorded in run.json)" in out


def test_markers_reads_a_console_file_of_any_name(tmp_path, capsys):
    log = tmp_path / "saved-from-ci.log"
    log.write_text("init: started (python 3.11.2)\r\nstatefsd: ready\r\n")
    assert cli.main(["markers", str(log)]) == cli.EXIT_FAILED
    out = capsys.readouterr().out
    assert f"run: {log}" in out
    rows = [line.split() for line in out.splitlines()]
    assert ["ok", "?", "s", "statefsd:", "ready"] in rows  # no times in a plain log
    assert "MISSING" in out


def test_one_saved_console_is_judged_as_one_boot(tmp_path, capsys):
    """A passing boot 1 saved under any name passes on its own: one console owes one boot,
    not the whole contract (a run directory still owes every boot)."""
    transcripts = Path(__file__).resolve().parent / "transcripts"
    log = tmp_path / "saved-console.txt"
    log.write_bytes((transcripts / "real_boot1.uart.log").read_bytes())
    assert cli.main(["markers", str(log)]) == cli.EXIT_PASSED
    out = capsys.readouterr().out
    assert "one console: judged as boot 1" in out
    assert "boots without a console record" not in out
    boot2 = tmp_path / "boot2"
    boot2.mkdir()
    (boot2 / "uart.log").write_bytes((transcripts / "real_boot2.uart.log").read_bytes())
    assert cli.main(["markers", str(boot2 / "uart.log")]) == cli.EXIT_PASSED
    out = capsys.readouterr().out
    assert "judged as boot 2" in out  # the bootN directory names the boot
    assert "boot 2 (" in out and "boots without a console record" not in out
    # Judged as boot 1 instead, boot 2's console lacks boot 1's proofs of a fresh store.
    assert cli.main(["markers", str(boot2 / "uart.log"), "--boot", "1"]) == cli.EXIT_FAILED


# -- checks before anything is created; one run per disk ---------------------------------------
def test_missing_qemu_is_reported_before_a_run_directory_exists(
    tmp_path, runs, capsys, monkeypatch
):
    fake_profile(monkeypatch, str(tmp_path / "no" / "qemu-system-aarch64"))
    image_dir = make_image_dir(tmp_path / "image")
    assert harness(image_dir, runs, "run") == cli.EXIT_HARNESS
    captured = capsys.readouterr()
    assert "error: QEMU binary" in captured.err
    assert "does not exist or is not executable" in captured.err
    assert "starting QEMU" not in captured.out
    assert not runs.exists() or not any(runs.iterdir())


def test_a_disk_held_by_another_run_is_refused_before_qemu_starts(
    image_dir, runs, tmp_path, capsys
):
    disk = tmp_path / "shared.img"
    disk.write_bytes(b"\0" * 4096)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from harness.vm.config import DiskSpec\n"
            "from harness.vm.disklock import hold_disks\n"
            f"with hold_disks([DiskSpec({str(disk)!r})]):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        assert harness(image_dir, runs, "run", "--disk", str(disk)) == cli.EXIT_HARNESS
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert f"disk image {disk} is in use by pid {holder.pid} (" in err
    assert "holds it for its whole boot sequence" in err
    assert "Negotiation failed" not in err
    assert not list(runs.glob("*/boot1"))  # no QEMU was started


def test_the_disk_is_held_between_boot_1_and_boot_2(
    image_dir, runs, tmp_path, monkeypatch, fake_qemu
):
    disk = tmp_path / "shared.img"
    disk.write_bytes(b"\0" * 4096)
    monkeypatch.setenv("FAKE_QEMU_LINGER", "1.0")
    argv = ["run", "--image-dir", str(image_dir), "--runs-dir", str(runs / "first")]
    argv += ["--accel", "tcg", "--disk", str(disk)]
    first = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import dataclasses, sys\n"
            "from harness import cli\n"
            "from harness.vm.arch import ARCH_PROFILES\n"
            "ARCH_PROFILES['aarch64'] = dataclasses.replace(\n"
            f"    ARCH_PROFILES['aarch64'], qemu_binary={str(fake_qemu)!r})\n"
            f"sys.exit(cli.main({argv!r}))\n",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert first.stdout is not None
    for line in first.stdout:
        if line.startswith("boot 2: starting QEMU"):
            break
    else:
        pytest.fail(f"the first run never started boot 2 (exit {first.wait()})")
    with pytest.raises(DiskInUse, match="in use by"), hold_disks([DiskSpec(str(disk))]):
        pass
    first.stdout.read()
    assert first.wait(timeout=60) == cli.EXIT_PASSED
