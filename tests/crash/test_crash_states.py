"""Every crash state of every workload recovers to a commit point, and stays writable.

``--crash-depth`` / ``STATEFS_CRASH_DEPTH`` runs a deeper campaign. A failure names the
workload, the seed and the crash state.
"""

from support.crashsim.check import failure_report
from support.crashsim.loads import BY_NAME


def test_every_crash_state_recovers_to_a_commit_point(
    crash_job, crash_results, record_crash_figures
):
    workload = BY_NAME[crash_job[1]]
    figures = crash_results(crash_job)
    record_crash_figures(figures)
    assert not figures.failures, failure_report(figures)
    assert figures.checked > 0
    for note, least in workload.expects:
        assert figures.notes.get(note, 0) >= least, (
            f"{workload.name} no longer reaches its path: {note}={figures.notes.get(note, 0)}, "
            f"expected >= {least}"
        )
