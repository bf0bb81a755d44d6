"""``python -m harness powercut``: the documented flags parse into a validated campaign."""

import pytest

from harness.cli import EXIT_HARNESS, build_parser, main
from harness.errors import ConfigError
from harness.powercut.campaign import DEFAULT_CUT_WINDOW, CampaignOptions, nonce_for
from harness.powercut.cli import options_from
from harness.powercut.fates import FATES


def parse(*argv: str):
    return build_parser().parse_args(["powercut", *argv])


def test_the_documented_command_parses():
    args = parse("--cycles", "20", "--seed", "1", "--disk-mib", "4", "--keep-artifacts")
    options = options_from(args, multiplier=2.0)
    assert options == CampaignOptions(
        cycles=20, seed=1, disk_mib=4, keep_artifacts=True, multiplier=2.0
    )
    assert options.cut_window == DEFAULT_CUT_WINDOW
    assert options.fates == FATES


def test_without_a_seed_one_is_chosen():
    assert isinstance(options_from(parse(), multiplier=1.0).seed, int)


def test_cut_window_and_fates():
    options = options_from(parse("--cut-window", "0.5:2", "--fates", "torn, drop"), multiplier=1.0)
    assert options.cut_window == (0.5, 2.0)
    assert options.fates == ("torn", "drop")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cycles", "0"], "cycles"),
        (["--disk-mib", "0"], "disk"),
        (["--cut-window", "3:1"], "cut window"),
        (["--fates", "melt"], "fates"),
    ],
)
def test_bad_values_are_refused_before_anything_runs(argv, message, tmp_path, capsys):
    with pytest.raises(ConfigError, match=message):
        options_from(parse(*argv), multiplier=1.0)
    assert main(["powercut", *argv, "--runs-dir", str(tmp_path / "runs")]) == EXIT_HARNESS
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_malformed_cut_window_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        parse("--cut-window", "soon")
    assert "MIN:MAX" in capsys.readouterr().err


def test_the_nonce_follows_the_seed():
    assert nonce_for(1) == nonce_for(1) != nonce_for(2)
    assert len(nonce_for(1)) == 16
    int(nonce_for(1), 16)
