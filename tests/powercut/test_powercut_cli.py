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


def test_large_batches_shards_and_triggers_parse():
    args = parse("--seed", "3", "--shard", "2/4", "--triggers", "compaction,recovery")
    options = options_from(args, multiplier=1.0)
    assert options.shard == (2, 4) and options.triggers == ("compaction", "recovery")
    assert options.value_max == 16384 and options.request_kib == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shard", "2/4"], "--shard needs --seed"),
        (["--seed", "1", "--triggers", "never"], "triggers must be among"),
        (["--value-max", "8"], "value max"),
        (["--seed", "1", "--cycles", "2", "--shard", "3/3"], "no cycle"),
    ],
)
def test_bad_shards_and_triggers_are_refused(argv, message):
    with pytest.raises(ConfigError, match=message):
        options_from(parse(*argv), multiplier=1.0)


def shard_report(path, index, count, cycles, *, passed=True, options=None):
    import json

    path.write_text(
        json.dumps(
            {
                "shard": [index, count],
                "passed": passed,
                "seconds": 10.0 * index,
                "error": "",
                "options": options or {"cycles": 10, "seed": 1, "shard": [index, count]},
                "cycles": [
                    {"verdict": verdict, "cut_trigger": trigger, "pending": pending,
                     "compacted": trigger == "compaction"}
                    for verdict, trigger, pending in cycles
                ],
            }
        )
    )  # fmt: skip
    return str(path)


def test_merge_combines_shards_into_one_verdict(tmp_path, capsys):
    one = shard_report(tmp_path / "1.json", 1, 2, [("pass", "format", 1), ("pass", "flush", 4)])
    two = shard_report(tmp_path / "2.json", 2, 2, [("pass", "compaction", 7)])
    assert main(["powercut", "merge", one, two]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "cuts by trigger: compaction 1, flush 1, format 1" in out
    assert "pending writes per cut: max 7, mean 4.0; compacted during 1 cycles" in out
    assert out[-1] == "power-cut campaign PASSED: 3 cycles, 0 losses (pass 3)"
    lost = shard_report(tmp_path / "3.json", 2, 2, [("LOSS", "time", 1)], passed=False)
    assert main(["powercut", "merge", one, lost]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("power-cut campaign FAILED")


def test_merge_refuses_a_missing_shard_or_mixed_options(tmp_path, capsys):
    one = shard_report(tmp_path / "1.json", 1, 3, [("pass", "time", 0)])
    three = shard_report(tmp_path / "3.json", 3, 3, [("pass", "time", 0)])
    assert main(["powercut", "merge", one, three]) == EXIT_HARNESS
    assert "need each of 1..3 once" in capsys.readouterr().err
    other = shard_report(tmp_path / "2.json", 2, 3, [], options={"cycles": 11, "seed": 1})
    assert main(["powercut", "merge", one, other, three]) == EXIT_HARNESS
    assert "different campaign options" in capsys.readouterr().err
