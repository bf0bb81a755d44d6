"""Durations (RUN_TIMEOUT syntax) and Deadline objects."""

import math

import pytest

from harness.deadline import Deadline, parse_duration
from harness.errors import ConfigError, DeadlineExceeded


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("2m", 120),
        ("1m30s", 90),
        ("1.5m", 90),
        ("500ms", 0.5),
        (" 45 ", 45),
        ("1h", 3600),
        (12, 12),
        (2.5, 2.5),
    ],
)
def test_parse_duration_accepts_run_timeout_forms(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "90x", "-5", "0", "m", "5 minutes", "inf"])
def test_parse_duration_rejects_garbage_naming_it(text):
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


def test_deadline_counts_down_and_expires():
    clock = FakeClock()
    deadline = Deadline(10, label="boot 1", clock=clock)
    assert deadline.remaining() == 10
    clock.now += 4
    assert deadline.remaining() == 6
    assert deadline.timeout(cap=0.5) == 0.5
    assert not deadline.expired
    clock.now += 6
    assert deadline.expired
    assert deadline.remaining() == 0
    with pytest.raises(DeadlineExceeded, match=r"waiting for x: deadline boot 1 of 10 s passed"):
        deadline.check("waiting for x")


def test_child_deadline_never_outlives_its_parent():
    clock = FakeClock()
    run = Deadline(90, label="run timeout", clock=clock)
    clock.now += 80
    boot = run.child(75, label="boot 2 timeout")
    assert boot.remaining() == 10
    assert boot.label == "run timeout"  # the parent is what will actually expire
    short = run.child(5, label="grace")
    assert short.remaining() == 5
    assert short.label == "grace"


def test_never_deadline_blocks_forever():
    deadline = Deadline.never()
    assert math.isinf(deadline.remaining())
    assert deadline.timeout() is None
    assert deadline.timeout(cap=1.0) == 1.0
    assert not deadline.expired
