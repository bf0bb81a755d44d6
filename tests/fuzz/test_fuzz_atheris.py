"""The coverage-guided entry points run, briefly and with a fixed seed, in every test run.

The deep campaigns (docs/testing/robustness.md) run ``tests/fuzz/atheris_*.py`` for minutes or
hours; this keeps them from rotting between campaigns and adds a few thousand coverage-guided
inputs to each run. Skipped where atheris is not installed (it is a dev extra).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.fuzzing import fuzz_scale
from support.tally import Outcomes

pytest.importorskip("atheris")

FUZZ_DIR = Path(__file__).resolve().parent
RUNS = {"replay": 400, "frames": 3000, "keys": 3000, "dispatch": 1500}
WHAT = {
    "replay": "journal replay (Store.open)",
    "frames": "FrameDecoder.feed + decode_batch",
    "keys": "normalize_key / is_normal_key",
    "dispatch": "statefsd dispatch (FrameServer.dispatch)",
}


@pytest.mark.parametrize("target", sorted(RUNS))
def test_atheris_entry_point(target):
    runs = RUNS[target] * fuzz_scale()
    proc = subprocess.run(
        [sys.executable, str(FUZZ_DIR / f"atheris_{target}.py"), f"-runs={runs}", "-seed=1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = re.search(r"Done (\d+) runs", proc.stderr)
    assert done, proc.stderr[-2000:]
    outcomes = Outcomes("Fuzz", WHAT[target], "atheris (libFuzzer, coverage-guided), seed 1")
    outcomes.count("no crash, no property violated", int(done.group(1)))
    cov = re.findall(r"cov: (\d+)", proc.stderr)
    if cov:
        outcomes.note(f"{cov[-1]} coverage edges")
    outcomes.commit()


def test_a_corpus_directory_is_made_on_first_use_and_kept(tmp_path: Path):
    """The documented deep command names a corpus directory that a fresh checkout does not
    have; libFuzzer alone would refuse it. The entry point makes it and the run fills it."""
    corpus = tmp_path / "build" / "fuzz" / "keys"
    command = [sys.executable, str(FUZZ_DIR / "atheris_keys.py"), "-runs=200", "-seed=1"]
    proc = subprocess.run(
        [*command, str(corpus)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert corpus.is_dir() and any(corpus.iterdir()), "the corpus kept nothing"
