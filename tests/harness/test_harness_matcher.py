"""The order-tolerant matcher on recorded console transcripts (tests/harness/transcripts/)."""

import re

import pytest
from harness_helpers import TRANSCRIPTS, transcript
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.contract.matcher import BootMatcher, Outcome
from harness.contract.spec import BootContract, Contract

CONTRACT = Contract.load()
FINGERPRINT = "3f1c9a7be2d04c5e8f6a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566a"


def feed_lines(matcher: BootMatcher, text: str, *, crlf: bool = True, step: float = 0.1):
    """Feed a transcript line by line as the serial console delivers it (CRLF, timed)."""
    for index, line in enumerate(text.splitlines()):
        matcher.feed(line + ("\r\n" if crlf else "\n"), at=1.0 + index * step)
    return matcher


def boot1() -> BootMatcher:
    return BootMatcher(CONTRACT.for_boot(1))


def test_boot1_transcript_passes_with_arrival_times():
    matcher = feed_lines(boot1(), transcript("boot1_pass.log"))
    assert matcher.outcome is Outcome.PASSED, matcher.report()
    assert matcher.missing == []
    assert matcher.arrivals["blk"].at == pytest.approx(1.2)
    assert matcher.arrivals["blk"].groups == {"ss": "512", "nsec": "131072"}
    assert matcher.arrivals["device-key"].groups == {
        "fingerprint": FINGERPRINT,
        "origin": "created",
    }
    assert matcher.counts["statefs-put"] == 2  # duplicates are fine, the first arrival counts
    assert matcher.arrivals["statefs-put"].line_no == 8
    assert "init-started" in matcher.arrivals  # optional markers are recorded too


def test_boot2_needs_the_reboot_marker_and_boot1_values():
    first = feed_lines(boot1(), transcript("boot1_pass.log"))
    pins = first.pins_for_next_boot()
    assert pins == {
        "blk": {"ss": "512", "nsec": "131072"},
        "device-key": {"fingerprint": FINGERPRINT},
    }
    second = feed_lines(
        BootMatcher(CONTRACT.for_boot(2), pinned=pins), transcript("boot2_pass.log")
    )
    assert second.outcome is Outcome.PASSED, second.report()
    assert second.arrivals["device-key"].groups["origin"] == "loaded"


def test_boot1_transcript_is_not_enough_for_boot2():
    matcher = feed_lines(BootMatcher(CONTRACT.for_boot(2)), transcript("boot1_pass.log"))
    assert matcher.outcome is Outcome.FAILED  # boot 2 expects the key to be loaded
    assert "origin='created', expected 'loaded'" in matcher.reason


def test_boot2_with_a_new_device_key_fails_naming_both_values():
    pins = {"device-key": {"fingerprint": FINGERPRINT}}
    matcher = BootMatcher(CONTRACT.for_boot(2), pinned=pins)
    feed_lines(matcher, transcript("boot2_key_changed.log"))
    assert matcher.outcome is Outcome.FAILED
    assert matcher.failure is not None
    assert matcher.failure.pattern_id == "device-key"
    assert matcher.failure.line_no == 4
    assert "expected 'loaded'" in matcher.failure.reason


def test_changed_fingerprint_with_the_right_origin_fails_on_the_pin():
    pins = {"device-key": {"fingerprint": FINGERPRINT}}
    matcher = BootMatcher(CONTRACT.for_boot(2), pinned=pins)
    other = "1" * 64
    matcher.feed(f"keystored: device key fingerprint {other} (loaded)\n", 2.0)
    assert matcher.outcome is Outcome.FAILED
    assert f"fingerprint='{other}' differs from the earlier boot's '{FINGERPRINT}'" in (
        matcher.reason
    )


def test_interleaved_kernel_output_and_shared_lines():
    matcher = feed_lines(boot1(), transcript("boot1_interleaved.log"), crlf=False)
    assert matcher.outcome is Outcome.PASSED, matcher.report()
    # "[    2.9] sched: RT throttling activatedSELFTEST: device key persist ok"
    assert matcher.arrivals["device-key-persist"].line.startswith("[    2.9] sched")
    assert matcher.arrivals["blk"].groups == {"ss": "4096", "nsec": "16384"}


def test_selftest_fail_short_circuits_naming_the_line():
    events = []
    matcher = BootMatcher(CONTRACT.for_boot(1), on_event=events.append)
    feed_lines(matcher, transcript("boot1_selftest_fail.log"))
    assert matcher.outcome is Outcome.FAILED
    assert matcher.failure is not None
    assert matcher.failure.pattern_id == "selftest-fail"
    assert matcher.failure.line_no == 6
    assert matcher.failure.at == pytest.approx(1.5)
    assert matcher.failure.line.startswith("SELFTEST: statefs persist FAIL")
    # Markers after the failure line are not counted: the verdict was already given.
    assert "bootctl-persist" not in matcher.arrivals
    assert [e.kind for e in events].count("failure") == 1
    report = matcher.report()
    assert "reason: failure pattern 'selftest-fail' on line 6" in report
    assert "failure line 6 (at 1.50 s): SELFTEST: statefs persist FAIL" in report
    assert ">    6" in report  # the excerpt points at the failure line


def test_traceback_is_a_failure_and_the_excerpt_shows_it_whole():
    matcher = feed_lines(boot1(), transcript("boot1_traceback.log"))
    assert matcher.outcome is Outcome.FAILED
    assert matcher.failure is not None
    assert matcher.failure.pattern_id == "traceback"
    excerpt = "\n".join(matcher.excerpt())
    assert "superblock CRC mismatch" in excerpt
    assert "statefsd: fatal" in excerpt


def test_kernel_panic_is_a_failure():
    matcher = feed_lines(boot1(), transcript("boot1_kernel_panic.log"))
    assert matcher.outcome is Outcome.FAILED
    assert matcher.failure is not None
    assert matcher.failure.pattern_id == "kernel-panic"
    assert matcher.failure.line_no == 6


def test_power_off_with_a_missing_marker_is_incomplete_and_names_it():
    matcher = feed_lines(boot1(), transcript("boot1_missing_marker.log"))
    assert matcher.outcome is Outcome.RUNNING
    matcher.finish("the console ended (QEMU exited) before every marker arrived")
    assert matcher.outcome is Outcome.INCOMPLETE
    assert [m.id for m in matcher.missing] == ["bootctl-persist"]
    report = matcher.report()
    assert "missing markers: bootctl-persist" in report
    assert "MISSING          SELFTEST: bootctl persist ok  [bootctl-persist]" in report
    # The excerpt starts a few lines before the last progress and runs to the end.
    assert "updated: bootctl selftest skipped" in report
    assert "reboot: Power down" in report


def test_per_marker_timeout_names_the_late_marker():
    matcher = BootMatcher(CONTRACT.for_boot(1), multiplier=2.0)
    matcher.feed("init: started (python 3.11.2)\n", 1.9)
    assert matcher.check_time(99.0) is Outcome.RUNNING  # blk may take 50 s x 2
    assert matcher.check_time(100.0) is Outcome.TIMEOUT
    assert matcher.reason == "marker 'blk' not seen within 100 s of launch"


def test_run_deadline_is_a_timeout():
    matcher = boot1()
    matcher.finish("boot 1 timeout: 75 s passed", timed_out=True)
    assert matcher.outcome is Outcome.TIMEOUT
    assert "(the console printed nothing)" in matcher.report()


def test_excerpt_is_bounded():
    matcher = boot1()
    matcher.feed("blk: virtio-blk up (ss=512 nsec=8)\n", 1.0)
    for number in range(5000):
        matcher.feed(f"noise {number}\n", 2.0)
    matcher.finish("ended")
    excerpt = matcher.excerpt()
    assert len(excerpt) == 40
    assert "(lines skipped)" in "\n".join(excerpt)
    assert excerpt[-1].endswith("noise 4999")
    assert ">    1" in excerpt[0]


def test_marker_split_across_reads_matches_once_complete():
    matcher = BootMatcher(BootContract.of(["statefsd: ready"], failures=()))
    for piece in ["stat", "efsd", ": rea", "dy"]:
        matcher.feed(piece, 1.0)
    assert matcher.outcome is Outcome.RUNNING
    matcher.feed("\r\n", 1.5)
    assert matcher.outcome is Outcome.PASSED
    assert matcher.arrivals["statefsd: ready"].at == 1.5


def test_trailing_partial_line_counts_at_the_end_of_the_stream():
    matcher = BootMatcher(BootContract.of(["done"], failures=()))
    matcher.feed("all done", 3.0)
    assert matcher.outcome is Outcome.RUNNING
    matcher.finish("console ended")
    assert matcher.outcome is Outcome.PASSED


def test_text_markers_must_end_the_line():
    matcher = BootMatcher(BootContract.of(["statefsd: ready"], failures=()))
    matcher.feed("statefsd: ready? not yet\n", 1.0)
    assert matcher.outcome is Outcome.RUNNING


def test_failures_after_completion_still_fail_the_boot():
    matcher = BootMatcher(BootContract.of(["A ok"]))
    matcher.feed("A ok\n", 1.0)
    assert matcher.outcome is Outcome.PASSED
    matcher.feed("SELFTEST: late FAIL\n", 2.0)
    assert matcher.outcome is Outcome.FAILED


def test_external_failure_keeps_the_first_reason():
    matcher = boot1()
    matcher.fail("QMP GUEST_PANICKED at 3.0 s")
    matcher.fail("something later")
    assert matcher.outcome is Outcome.FAILED
    assert matcher.reason == "QMP GUEST_PANICKED at 3.0 s"


def _chunks(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(text[last:point])
        last = point
    pieces.append(text[last:])
    return pieces


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=60),
    name=st.sampled_from(
        [
            "boot1_pass.log",
            "boot1_interleaved.log",
            "boot1_selftest_fail.log",
            "boot1_missing_marker.log",
        ]
    ),
)
def test_any_chunking_gives_the_same_verdict(cuts, name):
    text = transcript(name).replace("\n", "\r\n")
    whole = boot1()
    whole.feed(text)
    whole.finish("end")
    chunked = boot1()
    for piece in _chunks(text, cuts):
        chunked.feed(piece)
    chunked.finish("end")
    assert chunked.outcome is whole.outcome
    assert {k: v.line_no for k, v in chunked.arrivals.items()} == {
        k: v.line_no for k, v in whole.arrivals.items()
    }
    assert chunked.failure == whole.failure


@settings(max_examples=40, deadline=None)
@given(order=st.permutations(list(range(10))))
def test_any_marker_order_passes(order):
    lines = [
        "init: started (python 3.11.2)",
        "blk: virtio-blk up (ss=512 nsec=131072)",
        "statefsd: ready",
        "SELFTEST: statefs put ok",
        "statefsd: denied uid=1000 op=GET key=/state/keystore/device/seed",
        "SELFTEST: statefs deny ok",
        "SELFTEST: statefs persist ok",
        "SELFTEST: bootctl persist ok",
        "SELFTEST: device key persist ok",
        f"keystored: device key fingerprint {FINGERPRINT} (created)",
    ]
    matcher = boot1()
    for index in order:
        matcher.feed(lines[index] + "\r\nunrelated noise\r\n")
    assert matcher.outcome is Outcome.PASSED


def test_regex_markers_capture_named_groups():
    boot = BootContract.of([re.compile(r"FAKE: n=(?P<n>\d+)")], failures=())
    matcher = BootMatcher(boot)
    matcher.feed("FAKE: n=42\n", 0.5)
    assert matcher.captures() == {r"FAKE: n=(?P<n>\d+)": {"n": "42"}}


def test_real_recorded_run_passes_both_boots():
    """uart.log of a real two-boot run (CRLF, kernel lines, a soft restart inside boot 1)."""
    first = boot1()
    first.feed((TRANSCRIPTS / "real_boot1.uart.log").read_bytes().decode())
    first.finish("end")
    assert first.outcome is Outcome.PASSED, first.report()
    assert first.counts["device-key"] == 2  # created, then loaded after the soft restart
    second = BootMatcher(CONTRACT.for_boot(2), pinned=first.pins_for_next_boot())
    second.feed((TRANSCRIPTS / "real_boot2.uart.log").read_bytes().decode())
    second.finish("end")
    assert second.outcome is Outcome.PASSED, second.report()


def test_expectations_apply_to_the_first_arrival_and_values_must_repeat():
    ok = boot1()
    ok.feed(f"keystored: device key fingerprint {FINGERPRINT} (created)\n", 1.0)
    ok.feed(f"keystored: device key fingerprint {FINGERPRINT} (loaded)\n", 2.0)  # restart
    assert ok.outcome is not Outcome.FAILED
    changed = boot1()
    changed.feed(f"keystored: device key fingerprint {FINGERPRINT} (created)\n", 1.0)
    changed.feed(f"keystored: device key fingerprint {'2' * 64} (loaded)\n", 2.0)
    assert changed.outcome is Outcome.FAILED
    assert "differs from" in changed.reason
    assert "on line 1 of this boot" in changed.reason


# -- one rule for lines and their times, live and on replay ------------------------------------
LONE_CR = "SELFTEST: statefs put ok\r[    2.5] random: crng init done\r\n"


def test_a_lone_carriage_return_keeps_the_line_whole_live_and_on_replay(tmp_path):
    from harness.contract.history import replay

    contract = BootContract.of(["SELFTEST: statefs put ok"], failures=())
    live = BootMatcher(contract)
    live.feed(LONE_CR, 1.0)
    live.finish("the console ended")
    boot = tmp_path / "boot1"
    boot.mkdir()
    (boot / "uart.log").write_bytes(LONE_CR.encode())
    (boot / "uart.timestamps").write_text(f"  1.000000 {LONE_CR.removesuffix(chr(13) + chr(10))}\n")
    whole = Contract.from_dict(
        {
            "boot": [{"number": 1}],
            "marker": [{"id": "put", "text": "SELFTEST: statefs put ok"}],
        }
    )
    (replayed,) = replay(boot, whole)
    (from_log,) = replay(boot / "uart.log", whole)
    assert live.outcome is Outcome.INCOMPLETE
    assert replayed.matcher.outcome is Outcome.INCOMPLETE
    assert from_log.matcher.outcome is Outcome.INCOMPLETE
    assert replayed.matcher.lines == [(1.0, LONE_CR.removesuffix("\r\n"))]


def test_a_line_is_timed_by_its_newline_and_a_last_line_by_its_last_fragment():
    matcher = BootMatcher(BootContract.of(["never"], failures=()))
    matcher.feed("ab", 1.0)
    matcher.feed("c\nde", 2.0)
    matcher.feed("f", 3.0)
    matcher.finish("the console ended")
    assert matcher.lines == [(2.0, "abc"), (3.0, "def")]


def test_prefix_markers_match_a_line_that_goes_on():
    contract = Contract.from_dict(
        {
            "boot": [{"number": 1}],
            "marker": [{"id": "blk", "prefix": "blk: virtio-blk up"}],
        }
    )
    matcher = BootMatcher(contract.for_boot(1))
    matcher.feed("[    2.41] blk: virtio-blk up (ss=512 nsec=131072)\n", 2.4)
    assert matcher.outcome is Outcome.PASSED
    assert contract.markers[0].pattern.display == "blk: virtio-blk up..."


def test_ad_hoc_markers_are_named_by_their_text_in_the_report():
    matcher = BootMatcher(BootContract.of(["A ok", "C ok", re.compile(r"n=\d+")], failures=()))
    matcher.feed("A ok\n", 1.0)
    matcher.finish("the console ended")
    assert "missing markers: C ok, n=\\d+" in matcher.report()
    assert [m.id for m in BootContract.of(["x", "x"], failures=()).markers] == ["x", "x#2"]
