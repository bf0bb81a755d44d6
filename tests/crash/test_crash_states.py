"""Every crash state of every workload recovers to a commit point, and stays writable.

The brief's bar (docs/testing/crash-consistency.md): the default run checks at least 10,000
distinct crash states with zero failures; ``--crash-depth`` / ``STATEFS_CRASH_DEPTH`` runs a
deeper campaign. A failure names the workload, the seed and the crash state.
"""

from support.crashcheck import failure_report, run_workload


def test_every_crash_state_recovers_to_a_commit_point(
    crash_case, crash_depth, record_crash_figures
):
    workload, seed = crash_case
    figures = run_workload(workload, seed, crash_depth)
    record_crash_figures(figures)
    assert not figures.failures, failure_report(figures)
    assert figures.checked > 0
    for note, least in workload.expects:
        assert figures.notes.get(note, 0) >= least, (
            f"{workload.name} no longer reaches its path: {note}={figures.notes.get(note, 0)}, "
            f"expected >= {least}"
        )
