"""``python -m bench vm``: the contract's timeline, statefsd's throughput in the guest, and a
profile of the guest's start-up.

Three kinds of boots, all through the harness library (ContractRunner, Machine) with the
console timestamped on arrival:

1. ``--vm-runs`` full two-boot contract runs: median time since launch of every phase per boot,
   and the whole run's wall time (targets: <= 12 s, ``statefsd: ready`` <= 3.5 s);
2. throughput boots (``sq.mode=script``): the raw disk, the store in-process, statefsd through
   its socket; and one ``sq.mode=powercut`` boot as a cross-check with the harness's own
   power-cut workload;
3. profile boots: the kernel without ``quiet`` (its own timestamps), fresh interpreters and
   ``-X importtime``, the Ed25519 key, the store's open at several record limits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import guest_boot, guest_parse
from bench.contract_runs import run_once
from bench.env import describe_machine, sample_load, wait_for_quiet
from bench.results import write_json
from bench.vm_report import judge, render_report
from harness.artifacts import create_unique_dir, default_runs_dir, new_run_id
from harness.contract.spec import Contract
from harness.image import ensure_image
from harness.vm.arch import profile as arch_profile
from harness.vm.config import Accel
from harness.vm.kernel_args import new_nonce

GUEST_SCRIPT_RUNS = 3


def _contract(
    image: Any, runs: int, root: Path, accel: Accel, kernel_args: Sequence[str], say
) -> list[dict[str, Any]]:
    contract = Contract.load()
    records = []
    multiplier = arch_profile(image.arch).timeout_scale
    for index in range(1, runs + 1):
        run_dir = create_unique_dir(root, f"contract-{index}")
        run = run_once(image, contract, run_dir, accel, kernel_args, multiplier=multiplier)
        boots = ", ".join(
            f"boot {b.number} ready {b.phases.get('statefsd-ready') or float('nan'):.2f} s"
            for b in run.boots
        )
        verdict = "passed" if run.passed else "FAILED"
        say(
            f"  contract run {index}/{runs}: {verdict}, {run.wall:.2f} s ({boots}; "
            f"{run.load.label()})"
        )
        records.append(run.as_dict())
    return records


def _throughput(image: Any, ops: int, root: Path, accel: Accel, say) -> dict[str, Any]:
    results: dict[str, Any] = {"ops": ops, "boots": []}
    for index in range(1, GUEST_SCRIPT_RUNS + 1):
        for script in ("store", "statefsd"):
            boot = guest_boot.script_boot(
                image,
                root / f"{script}-{index}",
                script,
                accel=accel,
                extra_args=(f"sq.bench_ops={ops}",),
                zeroed=True,
            )
            measured = guest_parse.bench_lines(boot.lines)
            if not measured:
                say(f"  {script} boot {index}: no BENCH lines; see {boot.directory}/uart.log")
            results["boots"].append(
                {"script": script, "bench": measured, "dir": str(boot.directory)}
            )
        say(f"  guest throughput boots {index}/{GUEST_SCRIPT_RUNS} done")
    disk = guest_boot.create_zeroed_disk(root / "powercut.img", 64)
    config = guest_boot.base_config(image, disk, accel)
    args = ("sq.mode=powercut", "sq.boot=1", f"sq.nonce={new_nonce()}", f"sq.writes={ops}")
    boot = guest_boot.boot(config, args, root, "powercut")
    disk.unlink(missing_ok=True)
    results["powercut"] = guest_parse.powercut_rate(boot.lines)
    return results


#: Kernel lines kept in the result file (the rest stay in the boot's uart.log).
KERNEL_MILESTONES = ("Trying to unpack rootfs", "Freeing initrd memory", "Run /init")
KEPT_INITCALLS = 40


def _profile(image: Any, root: Path, accel: Accel, say) -> dict[str, Any]:
    imports = guest_boot.script_boot(image, root / "imports", "imports", accel=accel, quiet=False)
    say("  profile boot: imports and kernel timestamps done")
    costs = guest_boot.script_boot(
        image,
        root / "costs",
        "costs",
        accel=accel,
        quiet=False,
        extra_args=guest_boot.INITCALL_DEBUG,
    )
    say("  profile boot: device key, store open and initcalls done")
    initcalls = guest_parse.initcalls(costs.lines)
    return {
        "kernel": [
            {"host": host, "kernel": kernel, "text": text}
            for host, kernel, text in guest_parse.kernel_events(imports.lines)
            if any(needle in text for needle in KERNEL_MILESTONES)
        ],
        "initcalls": {
            "count": len(initcalls),
            "total_us": sum(us for _, us in initcalls),
            "slowest": initcalls[:KEPT_INITCALLS],
        },
        "init_started": imports.first("init: started"),
        "script_started": imports.first("BENCH: script-start"),
        "bench": {**guest_parse.bench_lines(imports.lines), **guest_parse.bench_lines(costs.lines)},
        "importtime": {
            root: [asdict(row) for row in rows]
            for root, rows in guest_parse.import_times(imports.lines).items()
        },
        "dirs": [str(imports.directory), str(costs.directory)],
    }


def run(
    *,
    runs: int,
    guest_ops: int,
    accel: Accel,
    profile: bool,
    wait_quiet: float,
    throughput: bool = True,
    kernel_args: Sequence[str] = (),
    say=print,
    arch: str = "aarch64",
) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    image = ensure_image(arch, progress=True)
    root = create_unique_dir(default_runs_dir(), f"bench-{new_run_id()}")
    say(f"VM benchmark ({arch}): runs under {root}")
    document: dict[str, Any] = {
        "kind": "vm",
        "arch": arch,
        "started": started.isoformat(timespec="seconds"),
        "machine": describe_machine().as_dict(),
        "accel": accel,
        "load_before": asdict(sample_load(1.0)),
        "root": str(root),
        "kernel_args": list(kernel_args),
    }
    if wait_quiet > 0:
        wait_for_quiet(0.25, wait_quiet, say=say)
    document["contract"] = _contract(image, runs, root, accel, kernel_args, say)
    if throughput:
        document["throughput"] = _throughput(image, guest_ops, root, accel, say)
    if profile:
        document["profile"] = _profile(image, root, accel, say)
    document["load_after"] = asdict(sample_load(1.0))
    document["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    document["targets"] = [verdict.as_dict() for verdict in judge(document)]
    return document


def main(
    *,
    runs: int,
    guest_ops: int,
    accel: Accel,
    profile: bool,
    results_dir: Path,
    wait_quiet: float = 0.0,
    throughput: bool = True,
    kernel_args: Sequence[str] = (),
    name: str = "vm",
    say=print,
    arch: str = "aarch64",
) -> int:
    document = run(
        arch=arch,
        runs=runs,
        guest_ops=guest_ops,
        accel=accel,
        profile=profile,
        wait_quiet=wait_quiet,
        throughput=throughput,
        kernel_args=kernel_args,
        say=say,
    )
    say("")
    say(render_report(document))
    path = write_json(results_dir, name, document)
    say(f"\nwrote {path}")
    passed = all(run["passed"] for run in document["contract"])
    return 0 if passed else 1
