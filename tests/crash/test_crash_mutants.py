"""Deliberately broken stores: the simulator must report each one (and not a correct variant).

A mutant that the simulator misses would mean the crash states or the oracle are too weak to
see that bug class, so each test also checks the broken code actually ran.
"""

import pytest

from harness.crashsim.states import Depth

from support.crashcheck import run_workload
from support.crashloads import BY_NAME
from support.crashmutants import MUTANTS, Mutant


@pytest.mark.parametrize("mutant", MUTANTS, ids=[mutant.name for mutant in MUTANTS])
def test_the_simulator_catches_the_mutant(
    mutant: Mutant, monkeypatch: pytest.MonkeyPatch, record_crash_mutant
):
    calls = mutant.apply(monkeypatch)
    failures, checked, missed = 0, 0, []
    for name in mutant.workloads:
        # A bug needs one failing state; the control must survive every state.
        figures = run_workload(BY_NAME[name], 0, Depth(), stop_after=1 if mutant.bug else None)
        failures += len(figures.failures)
        checked += figures.checked
        if mutant.bug and not figures.failures:
            missed.append(name)
        if not mutant.bug and figures.failures:
            missed.append(f"{name}: {figures.failures[0]}")
    record_crash_mutant(mutant.name, mutant.bug, failures, checked)
    assert calls.count > 0, f"the {mutant.name} mutant never ran"
    if mutant.bug:
        assert not missed, f"{mutant.name} ({mutant.about}) not caught by {missed}"
    else:
        assert not missed, f"control {mutant.name} wrongly flagged: {missed}"
