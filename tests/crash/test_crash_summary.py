"""The end-of-run summary is exactly one line in the documented form, summed over jobs."""

from support.crashsim.summary import summary_line


def test_the_summary_line_sums_the_jobs_with_thousands_separators():
    rows = [
        {"checked": 100_000, "after_recovery": 60_000, "failures": 0},
        {"checked": 23_456, "after_recovery": 7_890, "failures": 2},
    ]
    line = summary_line(rows)
    assert line == "crash states: 123,456 judged, 67,890 after a first recovery, 2 failures"
    assert "\n" not in line
