"""Deliberately broken stores: the simulator must report each one (and not a correct variant).

A mutant that the simulator misses would mean the crash states or the oracle are too weak to
see that bug class, so each test also checks the broken code actually ran. The summary (with
``-v``) says at which level each was caught, by crash states, by the work itself or by
injected media damage: level 0 is a device that never crashed before, 1 or more a crash after
that many recoveries.
"""

import pytest

from harness.crashsim.states import Depth

from support.crashsim.check import run_workload
from support.crashsim.history import BY_NAME as HISTORIES
from support.crashsim.history import run_history
from support.crashsim.loads import BY_NAME as WORKLOADS
from support.crashsim.mutants import MUTANTS, Mutant


@pytest.mark.parametrize("mutant", MUTANTS, ids=[mutant.name for mutant in MUTANTS])
def test_the_simulator_catches_the_mutant(
    mutant: Mutant, monkeypatch: pytest.MonkeyPatch, record_crash_mutant
):
    calls = mutant.apply(monkeypatch)
    stop_after = 1 if mutant.bug else None  # a bug needs one failing state; the control none
    runs = [
        (name, lambda name=name: run_workload(WORKLOADS[name], 0, Depth(), stop_after=stop_after))
        for name in mutant.workloads
    ]
    runs += [
        (
            f"{name} branch {branch}",
            lambda name=name, branch=branch: run_history(
                HISTORIES[name],
                0,
                Depth(),
                branch=branch,
                stop_after=stop_after,
                stop_on_damage=mutant.damage_only,
            ),
        )
        for name, branch in mutant.histories
    ]
    failures, checked, missed, levels = 0, 0, [], []
    for name, run in runs:
        figures = run()
        failures += len(figures.failures)
        checked += figures.checked
        levels += [(failure.kind, failure.level) for failure in figures.failures]
        if mutant.bug and not figures.failures:
            missed.append(name)
        if not mutant.bug and figures.failures:
            missed.append(f"{name}: {figures.failures[0]}")
    caught_at = {kind: min(lv for k, lv in levels if k == kind) for kind, _ in levels}
    record_crash_mutant(mutant.name, mutant.bug, failures, checked, caught_at)
    assert calls.count > 0, f"the {mutant.name} mutant never ran"
    if mutant.bug:
        assert not missed, f"{mutant.name} ({mutant.about}) not caught by {missed}"
    else:
        assert not missed, f"control {mutant.name} wrongly flagged: {missed}"
