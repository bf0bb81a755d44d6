"""``python -m bench scale``: do independent VMs scale across this machine's cores?

Two measurements, each with 1 and then 2 workers:

* the QEMU tests (``pytest -m qemu -n W``, pytest-xdist), wall time and the test counts from
  the JUnit XML pytest writes (not from its terminal output);
* ``--contracts`` two-boot contract runs through
  :class:`harness.contract.runner.ContractRunner`, W at a
  time in threads (each QEMU is its own process; the harness threads only wait on sockets).

With 2 host cores and TCG's one host thread per single-vCPU guest, 2 workers can at best halve
the wall time, and only on an otherwise idle machine.
"""

from __future__ import annotations

import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.contract_runs import run_once
from bench.env import describe_machine, sample_load, wait_for_quiet
from bench.results import write_json
from bench.table import render
from bench.targets import Verdict
from harness.artifacts import create_unique_dir, default_runs_dir, new_run_id
from harness.contract.spec import Contract
from harness.image import ensure_image

REPO = Path(__file__).resolve().parent.parent
PYTEST_TIMEOUT = 3600


def _junit_counts(path: Path) -> dict[str, int]:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, "0"))
    return counts


def pytest_run(workers: int, say) -> dict[str, Any]:
    """``pytest -m qemu -n workers`` from the repository root; wall time and counts."""
    with tempfile.TemporaryDirectory(prefix="sq-bench-scale-") as tmp:
        junit = Path(tmp) / "junit.xml"
        argv = [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "qemu",
            "-n",
            str(workers),
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
        ]
        load = sample_load()
        started = time.monotonic()
        done = subprocess.run(
            argv, cwd=REPO, capture_output=True, text=True, timeout=PYTEST_TIMEOUT, check=False
        )
        wall = time.monotonic() - started
        counts = _junit_counts(junit) if junit.is_file() else {}
    say(f"  pytest -m qemu -n {workers}: {wall:.1f} s, exit {done.returncode}, {counts}")
    tail = done.stdout.strip().splitlines()[-3:]
    return {
        "workers": workers,
        "wall": wall,
        "returncode": done.returncode,
        "counts": counts,
        "load": asdict(load),
        "tail": tail,
    }


def contracts_run(workers: int, count: int, say) -> dict[str, Any]:
    """``count`` contract runs, ``workers`` at a time; wall time of the batch and of each."""
    image = ensure_image("aarch64")
    contract = Contract.load()
    root = create_unique_dir(default_runs_dir(), f"bench-scale-{new_run_id()}-w{workers}")
    load = sample_load()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(run_once, image, contract, root / f"contract-{i}", "auto")
            for i in range(count)
        ]
        runs = [future.result() for future in futures]
    wall = time.monotonic() - started
    each = [run.wall for run in runs]
    passed = sum(run.passed for run in runs)
    say(
        f"  {count} contracts, {workers} at a time: {wall:.1f} s ({passed}/{count} passed, "
        f"median {statistics.median(each):.1f} s each)"
    )
    return {
        "workers": workers,
        "count": count,
        "wall": wall,
        "each": each,
        "passed": passed,
        "load": asdict(load),
        "root": str(root),
    }


def render_report(doc: dict[str, Any]) -> str:
    lines = [
        f"xdist scale-out, {doc['started']} (load before {doc['load_before']['loadavg1']:.2f})"
    ]
    rows = []
    base = None
    for entry in doc["pytest"]:
        base = base or entry["wall"]
        counts = entry["counts"]
        rows.append(
            [
                f"pytest -m qemu -n {entry['workers']}",
                f"{entry['wall']:.1f}",
                f"{base / entry['wall']:.2f}x",
                f"{counts.get('tests', 0)} tests, {counts.get('failures', 0)} failed, "
                f"{counts.get('errors', 0)} errors, {counts.get('skipped', 0)} skipped",
                f"{entry['load']['loadavg1']:.1f}",
            ]
        )
    base = None
    for entry in doc["contracts"]:
        base = base or entry["wall"]
        rows.append(
            [
                f"{entry['count']} contracts, {entry['workers']} at a time",
                f"{entry['wall']:.1f}",
                f"{base / entry['wall']:.2f}x",
                f"{entry['passed']}/{entry['count']} passed, median "
                f"{statistics.median(entry['each']):.1f} s per contract",
                f"{entry['load']['loadavg1']:.1f}",
            ]
        )
    lines.append(render(["", "wall s", "speed-up", "result", "load"], rows))
    return "\n".join(lines)


def judge(doc: dict[str, Any]) -> list[Verdict]:
    """No target in the issue; the verdict records whether 2 workers beat 1 at all."""
    verdicts = []
    for key, label in (("pytest", "pytest -m qemu"), ("contracts", "contract runs")):
        entries = doc[key]
        if len(entries) >= 2:
            verdicts.append(
                Verdict(
                    f"{label}: speed-up with {entries[-1]['workers']} workers",
                    entries[0]["wall"] / entries[-1]["wall"],
                    1.0,
                    True,
                    "x",
                    note="informational: > 1 means parallel VMs pay off",
                )
            )
    return verdicts


def main(
    *,
    workers: Sequence[int],
    repeat: int,
    results_dir: Path,
    contracts: int = 4,
    wait_quiet: float = 0.0,
    say=print,
) -> int:
    document: dict[str, Any] = {
        "kind": "scale",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": describe_machine().as_dict(),
        "load_before": asdict(sample_load(1.0)),
        "pytest": [],
        "contracts": [],
    }
    for _ in range(repeat):
        for count in workers:
            if wait_quiet > 0:
                wait_for_quiet(0.25, wait_quiet, say=say)
            document["pytest"].append(pytest_run(count, say))
        for count in workers:
            if wait_quiet > 0:
                wait_for_quiet(0.25, wait_quiet, say=say)
            document["contracts"].append(contracts_run(count, contracts, say))
    document["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    document["targets"] = [verdict.as_dict() for verdict in judge(document)]
    say("")
    say(render_report(document))
    path = write_json(results_dir, "scale", document)
    say(f"\nwrote {path}")
    failed = any(entry["returncode"] not in (0,) for entry in document["pytest"])
    return 1 if failed else 0
