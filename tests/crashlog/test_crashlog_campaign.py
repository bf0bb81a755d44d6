"""``crash-states`` without a VM: a kept run judged again (``--from-log``), the checks of a
log against its disk and console, the report, shards and their merge, the CLI's last line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from crashlog_helpers import NONCE, run_workload

from harness.cli import main
from harness.crashlog.campaign import CrashStatesRun, Options
from harness.crashlog.report import REPORT_NAME, Report, RunReport, kind_of, merge, read_report
from harness.errors import ConfigError
from harness.shard import falls_to, parse_shard

SUMMARY = r"^guest crash states: [\d,]+ judged, \d+ booted, [\d,]+ failures$"


def keep_run(directory: Path, writes: int, **lies: int) -> Path:
    """A run directory as ``crash-states`` keeps it, from a host store's logged workload."""
    device = run_workload(writes)
    directory.mkdir(parents=True)
    (directory / "writes.log").write_bytes(device.log.bytes())
    (directory / "disk.img").write_bytes(bytes(device.data))
    info = {"nonce": NONCE, "issued": writes, "acked": writes} | lies
    (directory / "run.json").write_text(json.dumps(info))
    return directory


def test_a_kept_run_is_judged_again_from_its_log(tmp_path: Path) -> None:
    kept = keep_run(tmp_path / "kept", 30)
    options = Options(from_log=str(kept), boots=0, seed=3)
    report = CrashStatesRun(None, options, tmp_path / "out", say=lambda _: None).run()
    (run,) = report.runs
    assert run.error == "" and run.failures == 0
    assert run.writes == 30 and run.windows == run.flushes + 1
    assert run.judged == sum(run.kinds.values()) > 500
    assert all(run.kinds[kind] for kind in ("prefix", "subset", "torn sector"))
    assert report.passed and report.summary_line().endswith("0 booted, 0 failures")


def test_a_log_that_disagrees_with_the_console_is_a_failure(tmp_path: Path) -> None:
    kept = keep_run(tmp_path / "kept", 10, issued=11)
    report = CrashStatesRun(None, Options(from_log=str(kept), boots=0), tmp_path).run()
    assert not report.passed and report.failure_count == 1
    assert "the console issued 11" in report.runs[0].error


def test_a_log_missing_writes_is_a_failure(tmp_path: Path) -> None:
    kept = keep_run(tmp_path / "kept", 10)
    image = bytearray((kept / "disk.img").read_bytes())
    image[-1] ^= 1  # a byte the log never wrote
    (kept / "disk.img").write_bytes(bytes(image))
    report = CrashStatesRun(None, Options(from_log=str(kept), boots=0), tmp_path).run()
    assert "the log is incomplete" in report.runs[0].error


def test_a_failing_state_keeps_its_image_and_a_command(tmp_path: Path) -> None:
    kept = keep_run(tmp_path / "kept", 8)
    (kept / "run.json").write_text(json.dumps({"nonce": "fedcba98", "issued": 8, "acked": 8}))
    report = CrashStatesRun(None, Options(from_log=str(kept), boots=0), tmp_path).run()
    assert report.runs[0].failures > 0
    first = report.failures[0]
    assert Path(first.image).stat().st_size == 1280 * 512
    assert f"--from-log {kept}" in first.command and "crash-states" in first.command


def test_kinds_from_the_generator_labels() -> None:
    assert kind_of("w3 prefix 2/5") == "prefix"
    assert kind_of("w3 subset 0110") == "subset"
    assert kind_of("w3 all but 2/11") == "subset"
    assert kind_of("w3 call 7 (8 sectors) torn: first only") == "torn call"
    assert kind_of("w3 prefix 1 + write 1 torn at byte 8 (new head)") == "torn sector"
    assert kind_of("w3 seeded 0: 2 kept + write 4 torn at byte 77") == "torn sector"


def test_shards_split_the_items_exactly_once() -> None:
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/3", "4/3", "1", "a/b"):
        with pytest.raises(ConfigError):
            parse_shard(bad)
    owners = [[k for k in range(1, 4) if falls_to(item, (k, 3))] for item in range(10)]
    assert all(len(owner) == 1 for owner in owners)
    assert {owner[0] for owner in owners} == {1, 2, 3}


def test_boots_spread_over_the_runs() -> None:
    options = Options(runs=4, boots=6)
    assert [options.boots_for(i) for i in range(4)] == [2, 2, 1, 1]


def shard_report(index: int, count: int, judged: int, failures: int = 0) -> Report:
    run = RunReport(seed=index, judged=judged, failures=failures)
    return Report(shard=(index, count), options={"depth": 1, "shard": [index, count]}, runs=[run])


def test_merge_needs_every_shard_once_and_sums_them() -> None:
    merged = merge([shard_report(2, 2, 7), shard_report(1, 2, 5)])
    assert merged.judged == 12 and merged.passed
    assert merge([shard_report(1, 2, 5), shard_report(2, 2, 1, failures=1)]).failure_count == 1
    with pytest.raises(ConfigError, match="need each of 1..3 once"):
        merge([shard_report(1, 3, 5), shard_report(3, 3, 5)])
    with pytest.raises(ConfigError, match="different splits"):
        merge([shard_report(1, 2, 5), shard_report(1, 3, 5)])


def test_the_cli_judges_a_kept_run_and_merges_shards(tmp_path: Path, capsys) -> None:
    kept = keep_run(tmp_path / "kept", 12)
    reports = []
    for index in (1, 2):
        path = tmp_path / f"shard{index}.json"
        argv = ["crash-states", "--from-log", str(kept), "--boots", "0"]
        argv += ["--shard", f"{index}/2", "--report", str(path), "--runs-dir", str(tmp_path)]
        assert main(argv) == 0
        reports.append(str(path))
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[-1].startswith("guest crash states: ")
    assert read_report(Path(reports[0])).judged > 0  # the one run falls to shard 1
    assert read_report(Path(reports[1])).runs == []
    assert main(["crash-states", "merge", *reports]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    import re

    assert re.match(SUMMARY, out[-1]) and " 0 failures" in out[-1]
    assert main(["crash-states", "merge", reports[0]]) != 0  # shard 2 of 2 missing
    assert "need each of 1..2 once" in capsys.readouterr().err
    assert (tmp_path / REPORT_NAME).exists() is False
