"""``diff RUN_A RUN_B`` and ``markers RUN --plot``: two recorded runs compared, a run drawn."""

import json
import shutil
import sys
from pathlib import Path

import pytest
from harness_helpers import TRANSCRIPTS

from harness import cli
from harness.contract.diff import diff_runs, normalize
from harness.contract.spec import Contract

CONTRACT = Contract.load()


def copy_run(tmp_path: Path, name: str) -> Path:
    return shutil.copytree(TRANSCRIPTS / "real_run", tmp_path / name)


def edit(run: Path, boot: int, edit_text) -> None:
    path = run / f"boot{boot}" / "uart.timestamps"
    path.write_text(edit_text(path.read_text()))


def test_a_run_against_itself_is_the_same(tmp_path: Path, capsys):
    a = copy_run(tmp_path, "a")
    result = diff_runs(a, a, CONTRACT)
    assert result.same
    assert all(boot.divergence is None for boot in result.boots)
    assert all(d.drift == 0 for boot in result.boots for d in boot.timing)
    assert cli.main(["diff", str(a), str(a)]) == cli.EXIT_PASSED
    assert "runs: the same markers and outcomes" in capsys.readouterr().out


def test_diff_names_missing_extra_moved_drift_and_the_first_diverging_line(tmp_path: Path):
    a, b = copy_run(tmp_path, "a"), copy_run(tmp_path, "b")

    def change(text: str) -> str:
        lines = text.splitlines()
        # B: the put proof is lost, the deny proof comes 1.5 s late (after the persist proofs),
        # and boot 2 prints an optional marker A never had.
        lines = [line for line in lines if not line.endswith("SELFTEST: statefs put ok")]
        deny = next(i for i, line in enumerate(lines) if line.endswith("SELFTEST: statefs deny ok"))
        moved = lines.pop(deny)
        at, _, rest = moved.strip().partition(" ")
        lines.insert(len(lines) - 1, f"{float(at) + 1.5:10.6f} {rest}")
        return "\n".join(lines) + "\n"

    edit(b, 1, change)
    edit(b, 2, lambda t: t + "  7.000000 init: done, powering off\n")
    result = diff_runs(a, b, CONTRACT)
    assert not result.same
    boot1, boot2 = result.boots
    assert boot1.missing == ["statefs-put"]
    assert boot1.extra == []
    assert boot1.moved == ["statefs-deny"]
    deny = next(d for d in boot1.timing if d.marker == "statefs-deny")
    assert deny.drift == pytest.approx(1.5, abs=0.01)
    assert boot1.divergence.line_no == 10
    assert boot1.divergence.a == "SELFTEST: statefs put ok"
    assert boot2.extra == ["init-done"]
    assert boot2.divergence.a is None  # A's console ended first
    assert boot2.divergence.b == "init: done, powering off"


def test_volatile_values_do_not_make_a_divergence():
    a = "[    4.768020] keystored: fingerprint 4373b8d1fcffd5fa0ce010e38af5ffa576d1 in 89.1 ms"
    b = "[    5.001000] keystored: fingerprint 99aa00d1fcffd5fa0ce010e38af5ffa57600 in 12.0 ms"
    assert normalize(a) == normalize(b)
    assert normalize("replayed 6 records") != normalize("replayed 7 records")


def test_diff_json_and_a_missing_boot(tmp_path: Path, capsys):
    a, b = copy_run(tmp_path, "a"), copy_run(tmp_path, "b")
    shutil.rmtree(b / "boot2")
    assert cli.main(["diff", str(a), str(b), "--json"]) == cli.EXIT_FAILED
    data = json.loads(capsys.readouterr().out)
    assert data["same"] is False
    boot2 = data["boots"][1]
    assert (boot2["outcome_a"], boot2["outcome_b"]) == ("passed", "not run")
    assert "reboot-persist" in boot2["missing"]
    assert data["boots"][0]["same"] is True
    assert data["boots"][0]["timing"][0]["drift"] == 0.0


def test_diff_text_output_lists_drift_over_a_threshold(tmp_path: Path, capsys):
    a, b = copy_run(tmp_path, "a"), copy_run(tmp_path, "b")
    edit(b, 1, lambda t: t.replace("  3.370262 statefsd: ready", "  4.370262 statefsd: ready"))
    assert cli.main(["diff", str(a), str(b), "--drift", "0.5"]) == cli.EXIT_PASSED
    out = capsys.readouterr().out
    assert "statefsd-ready" in out
    assert "+1.00" in out
    assert "    blk " not in out  # no drift: under the threshold


# -- the plot ---------------------------------------------------------------------------------
def test_plot_of_a_failed_run_is_a_png(tmp_path: Path, capsys):
    pytest.importorskip("matplotlib")
    run = copy_run(tmp_path, "run")
    edit(run, 1, lambda t: t.replace("statefs persist ok", "statefs persist FAIL: injected"))
    shutil.rmtree(run / "boot2")
    png = tmp_path / "plots" / "run.png"
    assert cli.main(["markers", str(run), "--plot", str(png)]) == cli.EXIT_FAILED
    assert f"plot: {png}" in capsys.readouterr().out
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    from matplotlib.image import imread

    pixels = imread(str(png))
    height, width = pixels.shape[:2]
    assert width > 1000
    assert height > 300
    # The failure cross and the hatched failed phase are drawn in red.
    red = (pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)
    assert red.sum() > 100


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    run = copy_run(tmp_path, "run")
    png = tmp_path / "run.png"
    assert cli.main(["markers", str(run), "--plot", str(png)]) == cli.EXIT_HARNESS
    err = capsys.readouterr().err
    assert "--plot needs matplotlib, which is not installed" in err
    assert "pip install -e '.[plot]'" in err
    assert not png.exists()


def test_a_replay_judges_under_the_profile_the_run_recorded(tmp_path: Path, capsys):
    run = copy_run(tmp_path, "run")
    boots = [{"number": n, "dir": str(run / f"boot{n}")} for n in (1, 2)]
    (run / "run.json").write_text(json.dumps({"profile": "icount", "boots": boots}))
    # The icount lane requires the guest's last lines, which boot 2 of this record lacks.
    assert cli.main(["markers", str(run)]) == cli.EXIT_FAILED
    out = capsys.readouterr().out
    assert "(profile icount)" in out
    assert "missing markers: selftest-complete, init-done" in out
    assert cli.main(["markers", str(run), "--profile", "default"]) == cli.EXIT_PASSED
    capsys.readouterr()
    plain = copy_run(tmp_path, "plain")
    result = diff_runs(plain, run, CONTRACT)  # each run under its own lane
    assert (result.boots[1].outcome_a, result.boots[1].outcome_b) == ("passed", "incomplete")
