"""Crash-simulator jobs: one workload run or one history subtree, named by plain values.

Why plain values: the default run judges over a hundred thousand crash states, and a
session spreads its jobs over a small process pool (``tests/crash/conftest.py``) or over
pytest-xdist workers; a job named by ``(kind, name, seed, branch, depth)`` pickles as a
tuple, and its :class:`~support.crashsim.check.Figures` come back the same way.
"""

from harness.crashsim import Depth

from support.crashsim.check import Figures, run_workload
from support.crashsim.history import BY_NAME as HISTORIES_BY_NAME
from support.crashsim.history import HISTORIES, run_history, shape
from support.crashsim.loads import BY_NAME as WORKLOADS_BY_NAME
from support.crashsim.loads import WORKLOADS

Job = tuple[str, str, int, int | None, int]


def workload_jobs(level: int) -> list[Job]:
    depth = Depth.at(level)
    return [
        ("workload", workload.name, seed, None, level)
        for seed in range(depth.seeds)
        for workload in WORKLOADS
    ]


def history_jobs(level: int) -> list[Job]:
    depth = Depth.at(level)
    _, branches = shape(depth)
    return [
        ("history", history.name, seed, branch, level)
        for seed in range(depth.seeds)
        for history in HISTORIES
        for branch in range(branches)
    ]


def job_id(job: Job) -> str:
    _kind, name, seed, branch, _level = job
    return f"{name}-seed{seed}" + ("" if branch is None else f"-branch{branch}")


def run_job(job: Job) -> Figures:
    """Run one job in this process."""
    kind, name, seed, branch, level = job
    depth = Depth.at(level)
    if kind == "workload":
        return run_workload(WORKLOADS_BY_NAME[name], seed, depth)
    return run_history(HISTORIES_BY_NAME[name], seed, depth, branch=branch)
