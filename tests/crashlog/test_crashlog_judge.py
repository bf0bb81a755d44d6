"""A host store running the power-cut workload on a logged disk: every crash state of its log
is judged, a correct store passes them all, and a disk that loses flushes is caught."""

from __future__ import annotations

import pytest
from crashlog_helpers import NONCE, SECTORS, LoggingDevice, run_workload

from harness.crashlog.history import recording_from_log
from harness.crashlog.judge import judge
from harness.crashlog.logformat import parse_log
from harness.crashsim import Depth, crash_states


def judge_all(device: LoggingDevice, acked: int) -> tuple[int, list[str], set[int]]:
    history = recording_from_log(parse_log(device.log.bytes()), SECTORS, acked_end=acked)
    assert history.final_image == bytes(device.data)
    failures, heads, judged = [], set(), 0
    for state in crash_states(history.recording, Depth(), seed=1):
        verdict = judge(state, 512, NONCE, history.allowed_heads(state.allowed))
        judged += 1
        heads.add(verdict.head)
        if not verdict.passed:
            failures.append(f"{state.label}: {verdict.problem}")
    return judged, failures, heads


def test_every_crash_state_of_a_correct_store_passes() -> None:
    device = run_workload(40)
    judged, failures, heads = judge_all(device, acked=40)
    assert failures == []
    assert judged > 1000
    assert heads == set(range(41))  # every head from empty (0) to the last write was seen


def test_the_recording_sees_compactions_and_every_issue() -> None:
    device = run_workload(400)
    history = recording_from_log(parse_log(device.log.bytes()), SECTORS, acked_end=400)
    assert history.issued == 400
    assert history.compactions >= 1
    assert history.heads[-1] == 400


def test_a_disk_that_drops_flushes_loses_acknowledged_writes() -> None:
    device = run_workload(12, drop_flushes=True)
    _, failures, _ = judge_all(device, acked=12)
    assert failures
    assert any("acknowledged write" in failure and "lost" in failure for failure in failures)


@pytest.mark.parametrize("lie", ["altered", "invented"])
def test_the_judge_refuses_altered_values_and_invented_writes(lie: str) -> None:
    device = run_workload(6)
    history = recording_from_log(parse_log(device.log.bytes()), SECTORS, acked_end=6)
    states = list(crash_states(history.recording, Depth(), seed=1))
    final = next(s for s in states if history.allowed_heads(s.allowed) == [6])
    if lie == "altered":
        verdict = judge(final, 512, "fedcba98", [6])  # another nonce: every value differs
        assert "workload check failed" in verdict.problem and "altered" in verdict.problem
    else:
        verdict = judge(final, 512, NONCE, [4, 5])  # as if write 6 had never been issued
        assert verdict.head == 6 and "never issued" in verdict.problem
