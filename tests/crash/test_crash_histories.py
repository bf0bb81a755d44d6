"""Crash-recover-continue histories: every crash state of every recording of a device that
is cut, recovers (and is cut again during recovery), keeps working, compacts and is cut
again, at least three times, recovers to a commit point without an error.

Each history tree is split into jobs by the root's crash picks (branch 0 also judges the
root). A failure names the history, the chain of crashes that led to the recording, and the
crash state.
"""

from support.crashsim.check import failure_report
from support.crashsim.history import BY_NAME

#: What each branch must reach, beyond its history's own ``expects``: branch 0 starts from
#: a compaction cut before its superblock switch, branch 1 from a torn commit (a seal).
BRANCH_EXPECTS = {
    0: (("deepest", 3), ("crashes_in_switch", 2)),
    1: (("deepest", 3), ("seals", 1), ("crashes_in_seal", 1)),
}


def test_every_history_recovers_at_every_crash(history_job, crash_results, record_crash_figures):
    history = BY_NAME[history_job[1]]
    figures = crash_results(history_job)
    record_crash_figures(figures)
    assert not figures.failures, failure_report(figures)
    assert figures.after_recovery > 0
    expects = history.expects + BRANCH_EXPECTS.get(history_job[3], ())
    for note, least in expects:
        assert figures.notes.get(note, 0) >= least, (
            f"{figures.workload} no longer reaches its path: {note}="
            f"{figures.notes.get(note, 0)}, expected >= {least}"
        )
