"""The crash simulator's knobs, its jobs and the pool that runs them.

Depth: ``--crash-depth=N`` (registered in tests/conftest.py, so it parses from anywhere) or
``STATEFS_CRASH_DEPTH=N`` (works for any invocation, ``make test`` included); the option
wins. Depth 1 is the fast default. See docs/testing/crash-consistency.md.

Jobs (a workload run, a history subtree) are CPU-bound and independent, and the default run
judges over a hundred thousand crash states, so the first test of this directory submits
every selected job to a pool of ``STATEFS_CRASH_WORKERS`` processes (default: 2, or fewer
CPUs), longest first, and the tests that wait for a job's result run after the others here
(the mutants, which patch this process, then run while the pool works). Under pytest-xdist,
which already spreads tests over processes, jobs run in the test's own process. Figures reach
the one-line summary through ``support.crashsim.summary``.
"""

import os
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context

import pytest

from harness.crashsim import Depth

from support.crashsim.check import Figures
from support.crashsim.jobs import Job, history_jobs, job_id, run_job, workload_jobs
from support.crashsim.summary import FIGURES_PROPERTY, MUTANT_PROPERTY

ENV_DEPTH = "STATEFS_CRASH_DEPTH"
ENV_WORKERS = "STATEFS_CRASH_WORKERS"
JOB_PARAMS = ("crash_job", "history_job")


def depth_level(config: pytest.Config) -> int:
    option = config.getoption("crash_depth", default=None)
    if option is not None:
        return int(option)
    return int(os.environ.get(ENV_DEPTH, "1") or "1")


@pytest.fixture(scope="session")
def crash_depth(pytestconfig: pytest.Config) -> Depth:
    return Depth.at(depth_level(pytestconfig))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    level = depth_level(metafunc.config)
    for name, jobs in (("crash_job", workload_jobs), ("history_job", history_jobs)):
        if name in metafunc.fixturenames:
            cases = jobs(level)
            metafunc.parametrize(name, cases, ids=[job_id(job) for job in cases])


def _waits_for_a_job(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(name in params for name in JOB_PARAMS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Within this directory's items (contiguous in a run), the ones waiting for a job last."""
    here = os.path.dirname(__file__)
    positions = [index for index, item in enumerate(items) if str(item.path).startswith(here)]
    ours = [items[index] for index in positions]
    ours.sort(key=_waits_for_a_job)  # stable: file order otherwise
    for index, item in zip(positions, ours, strict=True):
        items[index] = item


def _workers() -> int:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return 1
    default = min(2, os.cpu_count() or 1)
    return max(1, int(os.environ.get(ENV_WORKERS, default) or default))


class _Pool:
    """Every selected job of the session, submitted at once to a process pool."""

    def __init__(self, session: pytest.Session, workers: int) -> None:
        jobs: list[Job] = []
        for item in session.items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            jobs += [params[name] for name in JOB_PARAMS if name in params]
        jobs.sort(key=lambda job: job[0] != "history")  # the long ones first
        self.executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        self.futures: dict[Job, Future] = {job: self.executor.submit(run_job, job) for job in jobs}

    def result(self, job: Job) -> Figures:
        future = self.futures.get(job)
        return run_job(job) if future is None else future.result()


@pytest.fixture(scope="session", autouse=True)
def crash_results(request: pytest.FixtureRequest):
    """``crash_results(job)``: the job's figures, from the pool or run here (autouse: the
    pool starts with the first test of this directory)."""
    workers = _workers()
    if workers == 1 or not any(_waits_for_a_job(item) for item in request.session.items):
        yield run_job
        return
    pool = _Pool(request.session, workers)
    try:
        yield pool.result
    finally:
        pool.executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def record_crash_figures(request: pytest.FixtureRequest):
    """Attach a run's figures to the test report, for the summary."""

    def record(figures: Figures) -> None:
        request.node.user_properties.append((FIGURES_PROPERTY, figures.as_dict()))

    return record


@pytest.fixture
def record_crash_mutant(request: pytest.FixtureRequest):
    """Attach a mutant's verdict to the test report, for the summary."""

    def record(name: str, bug: bool, failures: int, checked: int, caught_at: dict) -> None:
        entry = {
            "mutant": name,
            "bug": bug,
            "failures": failures,
            "checked": checked,
            "caught_at": caught_at,
        }
        request.node.user_properties.append((MUTANT_PROPERTY, entry))

    return record
