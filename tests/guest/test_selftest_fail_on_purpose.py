"""``sq.fail=<step>``: the selftest fails the named step on purpose, before running it, with the
FAIL line the contract's failure pattern catches (the harness tests of a failing boot use it)."""

import pytest

from guest.init.contract import ContractParams
from guest.selftest.checks import Selftest
from harness.contract.matcher import BootMatcher, Outcome
from harness.contract.spec import Contract

NONCE = "00112233aabbccdd"


def test_the_named_step_fails_before_it_runs_and_the_contract_sees_it(
    capfd: pytest.CaptureFixture[str],
):
    ran = []
    selftest = Selftest(boot=1, nonce=NONCE, restart=lambda: ran.append("restart"))
    selftest.check_put = lambda: ran.append("put")  # type: ignore[method-assign]
    selftest.prepare_bootctl = lambda: ran.append("bootctl")  # type: ignore[method-assign]
    selftest.prepare_device_key = lambda: ran.append("key")  # type: ignore[method-assign]
    selftest.check_deny = lambda: ran.append("deny")  # type: ignore[method-assign]
    selftest.fail_step = "soft-restart"
    assert selftest.run() is False
    assert ran == ["put", "bootctl", "key", "deny"]  # the restart itself never ran
    lines = capfd.readouterr().out.splitlines()
    assert lines[-1] == "SELFTEST: soft restart FAIL on purpose (sq.fail)"
    matcher = BootMatcher(Contract.load().for_boot(1))
    for line in lines:
        matcher.feed_line(line)
    assert matcher.outcome is Outcome.FAILED
    assert matcher.failure is not None and "FAIL on purpose" in matcher.failure.line


def test_the_kernel_argument_reaches_the_selftest_and_defaults_to_none():
    assert ContractParams({"sq.nonce": NONCE, "sq.fail": "statefs-persist"}).fail_step == (
        "statefs-persist"
    )
    assert ContractParams({"sq.nonce": NONCE}).fail_step == ""
