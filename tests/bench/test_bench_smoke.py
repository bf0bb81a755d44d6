"""Keep ``bench/`` from rotting: the host benchmark at toy sizes, and the guest scripts.

Benchmarks are not tests (nothing here judges a figure); this only proves that ``python -m
bench store`` still runs end to end, writes a result file with every section and target, and
that every guest script still compiles and fits on the kernel command line. A few seconds.
"""

import base64
import importlib
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from bench.guest_payload import SCRIPTS_DIR, payload
from harness.vm.kernel_args import script_args

REPO = Path(__file__).resolve().parents[2]

GUEST_SCRIPTS = sorted(p.stem for p in SCRIPTS_DIR.glob("*.py") if p.stem != "__init__")
BENCH_MODULES = sorted(
    p.stem for p in (REPO / "bench").glob("*.py") if p.stem not in ("__init__", "__main__")
)


@pytest.mark.parametrize("name", BENCH_MODULES)
def test_bench_module_imports(name: str) -> None:
    """The VM, scale and profile parts are too slow to run here; importing them at least
    catches a renamed harness or store API they call."""
    importlib.import_module(f"bench.{name}")


def test_host_bench_runs_end_to_end_at_toy_sizes(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "store",
            "--toy",
            "--dir",
            str(tmp_path / "dev"),
            "--results-dir",
            str(tmp_path / "results"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Durable writes" in done.stdout and "Targets" in done.stdout
    (result,) = (tmp_path / "results").glob("store-*.json")
    document = json.loads(result.read_text())
    throughput = document["throughput"]
    assert set(throughput["physical"]) == {"4096", "512"}
    assert {"statefs-512", "statefs-4096", "sqlite3"} <= set(throughput["durable"])
    for section in ("durable", "batched", "gets"):
        assert all(figure["median"] > 0 for figure in throughput[section].values())
    assert document["reopen"] and document["replay_curve"]["fixed"]
    assert document["targets"]


@pytest.mark.parametrize("name", GUEST_SCRIPTS)
def test_guest_script_compiles_and_fits_the_kernel_command_line(name: str) -> None:
    loader = payload(name)
    script_args(loader)  # raises ConfigError when the command line cannot hold it
    packed = loader.split("b64decode('")[1].split("')")[0]
    source = zlib.decompress(base64.b64decode(packed)).decode("utf-8")
    compile(source, f"<{name}>", "exec")
    assert "__sq_script__" in source


def test_contract_phases_come_from_the_contract_and_the_rest_from_the_console() -> None:
    """The VM benchmark's phase table names contract markers by id (their times are the
    matcher's arrivals); only lines the contract does not require are matched as text."""
    from types import SimpleNamespace

    from bench.contract_runs import CONSOLE_PHASES, phase_times
    from harness.contract.spec import Contract

    ids = {marker.id for marker in Contract.load().markers}
    assert not set(CONSOLE_PHASES) & ids
    lines = [(0.5, "statefsd: ready"), (1.0, "keystored: ready"), (2.0, "statefsd: ready")]
    arrivals = {"blk": SimpleNamespace(at=0.25), "init-started": SimpleNamespace(at=None)}
    times = phase_times(lines, arrivals)
    assert times["blk"] == 0.25
    assert times["keystored-ready"] == 1.0
    assert times["statefsd-ready-again"] == 2.0
    assert times["init-started"] is None
    assert times["store-opened"] is None
