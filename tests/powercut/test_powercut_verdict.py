"""The verdict rules, the console parsing and the report, on plain values (no VM)."""

import pytest

from harness.contract.matcher import BootMatcher, Outcome
from harness.contract.spec import Contract
from harness.errors import ContractError
from harness.powercut.report import CampaignResult, CycleResult, render, table_row
from harness.powercut.verdict import Verdict, judge
from harness.powercut.watch import (
    ACKED_MARKER,
    ISSUE_MARKER,
    RECOVER_MARKER,
    REPLAYED_MARKER,
    WriterProgress,
    boot_contract,
)


@pytest.mark.parametrize(
    ("start", "acked", "issued", "recovered", "verdict"),
    [
        (10, 20, 21, 20, Verdict.PASS),  # the issued-but-unacked write is gone: fine
        (10, 20, 21, 21, Verdict.PASS),  # ... or there: fine too
        (10, None, None, 10, Verdict.PASS),  # cut before the first write
        (10, None, 11, 11, Verdict.PASS),
        (10, 20, 21, 19, Verdict.LOSS),  # an acknowledged write is missing
        (10, None, 11, 9, Verdict.LOSS),  # what the boot started from is gone
        (10, 20, 21, 22, Verdict.INVENTED),  # a write nobody issued
        (10, None, None, 11, Verdict.INVENTED),
    ],
)
def test_judge(start, acked, issued, recovered, verdict):
    judgement = judge(start=start, acked=acked, issued=issued, recovered=recovered)
    assert judgement.verdict is verdict
    assert judgement.passed == (verdict is Verdict.PASS)


def test_loss_names_the_missing_write():
    judgement = judge(start=0, acked=57, issued=58, recovered=50)
    assert judgement.reason == "acknowledged write 57 is missing: recovered head 50"


def test_the_guest_failure_comes_first():
    judgement = judge(
        start=0, acked=5, issued=6, recovered=6, guest_failure="line 9: SELFTEST: powercut FAIL"
    )
    assert judgement.verdict is Verdict.FAIL
    assert "FAIL" in judgement.reason
    assert judge(start=0, acked=5, issued=6, recovered=None).verdict is Verdict.FAIL


CONSOLE = """\
init: started (python 3.11.2)
blk: virtio-blk up (ss=512 nsec=4096)
statefsd: replayed 65 records, 33 keys in 124.8 ms (tail: crc mismatch, sealed)
statefsd: ready
POWERCUT: recovered head=7
SELFTEST: powercut recover ok head=7
POWERCUT: issue 8
POWERCUT: acked 8
POWERCUT: issue 9
POWERCUT: acked 9
POWERCUT: issue 10
"""


def matcher_and_progress(text: str) -> tuple[BootMatcher, WriterProgress]:
    contract = boot_contract(Contract.load(), 3, timeout=60)
    by_id = {m.id: m for m in contract.markers}
    matcher = BootMatcher(contract)
    progress = WriterProgress()
    for index, line in enumerate(text.splitlines()):
        matcher.feed_line(line, float(index))
        progress.see(by_id[ISSUE_MARKER], by_id[ACKED_MARKER], line)
    return matcher, progress


def test_the_contract_markers_read_a_power_cut_console():
    matcher, progress = matcher_and_progress(CONSOLE)
    assert matcher.outcome is Outcome.PASSED
    assert matcher.arrivals[RECOVER_MARKER].groups == {"head": "7"}
    assert (progress.issued, progress.acked) == (10, 9)
    replayed = matcher.arrivals[REPLAYED_MARKER].groups
    assert (replayed["records"], replayed["tail"]) == ("65", "crc mismatch")


def test_a_failed_recovery_check_is_a_failure_line():
    matcher, _ = matcher_and_progress(
        "statefsd: ready\nSELFTEST: powercut recover FAIL value of write 3 is altered\n"
    )
    assert matcher.outcome is Outcome.FAILED
    assert matcher.failure is not None
    assert matcher.failure.pattern_id == "selftest-fail"


def test_the_recovery_marker_is_required_only_in_power_cut_boots():
    contract = Contract.load()
    assert RECOVER_MARKER not in {m.id for m in contract.for_boot(1).required}
    power = boot_contract(contract, 1, timeout=60)
    assert [m.id for m in power.required] == [RECOVER_MARKER]
    assert {p.id for p in power.failures} == {p.id for p in contract.failures}


def test_a_contract_without_the_power_cut_markers_is_refused():
    contract = Contract.loads(
        'version = 1\n[[boot]]\nnumber = 1\n[[marker]]\nid = "x"\ntext = "x ok"\n'
    )
    with pytest.raises(ContractError, match="powercut-recover"):
        boot_contract(contract, 1, timeout=60)


def cycle(**changes) -> CycleResult:
    values = {
        "cycle": 3,
        "seed": 9,
        "verdict": Verdict.PASS,
        "reason": "",
        "start": 100,
        "acked": 140,
        "issued": 141,
        "recovered": 141,
        "cut_at": 8.25,
        "cut_seq": 141,
        "cut_trigger": "dirty",
        "fate": "torn #0 3/8s +0 +rollback",
        "fate_kind": "torn",
        "pending": 1,
        "rolled_back": True,
        "boot_seconds": 9.5,
        "recovery_at": 6.0,
    }
    values.update(changes)
    return CycleResult(**values)


def test_a_table_row_shows_every_column():
    row = table_row(cycle())
    for text in ("3", "8.25 / 141", "dirty", "torn #0 3/8s +0 +rollback", "140", "141", "pass"):
        assert text in row
    assert cycle().writes_acked == 40


def test_the_report_counts_losses_and_gives_evidence(tmp_path):
    result = CampaignResult(tmp_path, seed=9, nonce="ab" * 8, cycles_requested=2)
    result.cycles = [
        cycle(cycle=1, replay_tail="crc mismatch", compacted=True),
        cycle(
            cycle=2,
            verdict=Verdict.LOSS,
            reason="acknowledged write 140 is missing: recovered head 139",
            recovered=139,
            excerpt="POWERCUT: acked 140",
        ),
    ]
    text = render(result)
    assert not result.passed
    assert result.losses == 1
    assert "cycles: 2 of 2 (1 passed)  losses: 1" in text
    assert "fates: torn 2; flushes rolled back: 2" in text
    assert "store: compacted during 1 cycles; replay after the cut ended at: crc mismatch 1" in text
    evidence = text.split("cycle 2 LOSS: ", 1)[1]
    for needle in ("seed 9", "fate torn", "acked 140", "recovered 139", str(tmp_path)):
        assert needle in evidence
    assert "POWERCUT: acked 140" in evidence


def test_a_campaign_passes_only_with_every_cycle(tmp_path):
    result = CampaignResult(tmp_path, seed=1, nonce="ab" * 8, cycles_requested=2)
    result.cycles = [cycle(cycle=1)]
    assert not result.passed
    result.cycles.append(cycle(cycle=2))
    assert result.passed
    result.error = "the checking boot failed"
    assert not result.passed
