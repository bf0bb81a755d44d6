"""The guest's contract flow on the host: the same services (forked by the same supervisor,
each as its own identity), the same selftest, over a file-backed disk and sockets in a temp
dir. The VM runs exactly this code; here a failure is quick to debug.

The console lines are judged by the harness's own contract (``harness/contract/contract.toml``) and
matcher, as a VM run's are: a marker renamed in the guest or in the contract fails here, not
first in QEMU. Only the markers of PID 1's boot path (``init: started``, the raw block
device's ``blk:`` line), which the host cannot run, are left missing, and the test checks
that exactly those are.
"""

from pathlib import Path

import guest
from harness.contract.matcher import BootMatcher
from harness.contract.spec import Contract

from support.guest_flow import contract_boot, needs_root

pytestmark = needs_root
NONCE = "00112233aabbccdd"
#: Printed by PID 1 in the VM only: it mounts /proc and probes the raw virtio disk.
PID1_ONLY = {"init-started", "blk"}


def judge(lines: list[str], boot: int, pinned=None) -> BootMatcher:
    """The contract's verdict on one boot's console lines."""
    matcher = BootMatcher(Contract.load().for_boot(boot), pinned=pinned)
    for line in lines:
        matcher.feed_line(line)
    return matcher


def run_boot(run_dir, boot: int, nonce: str, capfd, before_restart=lambda: None):
    passed = contract_boot(run_dir, boot, nonce, before_restart=before_restart)
    return passed, capfd.readouterr().out.splitlines()


def test_two_boots_pass_the_real_contract(guest_run, capfd):
    passed, lines = run_boot(guest_run, 1, NONCE, capfd)
    assert passed, lines
    first = judge(lines, 1)
    assert first.failure is None, first.report()
    assert {marker.id for marker in first.missing} == PID1_ONLY, first.report()
    assert first.arrivals["device-key"].groups["origin"] == "created"
    assert first.arrivals["statefsd-denied"].groups["uid"] == "1000"

    passed, lines = run_boot(guest_run, 2, NONCE, capfd)
    assert passed, lines
    second = judge(lines, 2, pinned=first.pins_for_next_boot())
    assert second.failure is None, second.report()
    assert {marker.id for marker in second.missing} == PID1_ONLY, second.report()
    assert "reboot-persist" in second.arrivals
    assert second.arrivals["device-key"].groups == first.arrivals["device-key"].groups | {
        "origin": "loaded"
    }


def test_the_matcher_fails_a_boot_whose_marker_is_missing(guest_run, capfd):
    """Control: the same lines without one selftest marker are judged incomplete."""
    passed, lines = run_boot(guest_run, 1, NONCE, capfd)
    assert passed
    matcher = judge([line for line in lines if line != "SELFTEST: statefs deny ok"], 1)
    assert {marker.id for marker in matcher.missing} == PID1_ONLY | {"statefs-deny"}


def test_reboot_with_the_wrong_nonce_fails_with_a_named_reason(guest_run, capfd):
    assert run_boot(guest_run, 1, NONCE, capfd)[0]
    passed, lines = run_boot(guest_run, 2, "ffffffffffffffff", capfd)
    assert not passed
    assert any(line.startswith("SELFTEST: reboot persist FAIL nonce") for line in lines)
    matcher = judge(lines, 2)
    assert matcher.failure is not None and matcher.failure.pattern_id == "selftest-fail"
    assert "reboot-persist" not in matcher.arrivals


def test_boot_two_on_a_fresh_disk_fails(guest_run, capfd):
    passed, lines = run_boot(guest_run, 2, NONCE, capfd)
    assert not passed
    assert any(line.startswith("SELFTEST: reboot persist FAIL no record") for line in lines)


def test_a_store_that_loses_writes_on_restart_fails_persist(guest_run, capfd, monkeypatch):
    """A mutant statefsd whose replay forgets everything: put ok, persist must FAIL."""
    from guest.statefs import store as store_module

    real_open = store_module.Store.open.__func__
    armed = [False]  # set in init before the restart; the statefsd forked then inherits it

    def forgetful_open(cls, dev, config=None):
        if armed[0]:  # the restart: lose everything once (statefsd then formats)
            armed[0] = False
            dev.write(0, bytes(dev.size_bytes))
            dev.flush()
        return real_open(cls, dev, config)

    monkeypatch.setattr(store_module.Store, "open", classmethod(forgetful_open))
    passed, lines = run_boot(guest_run, 1, NONCE, capfd, lambda: armed.__setitem__(0, True))
    assert not passed
    assert "SELFTEST: statefs put ok" in lines
    assert "SELFTEST: statefs persist ok" not in lines
    assert any(line.startswith("SELFTEST: statefs persist FAIL") for line in lines)


def test_every_text_marker_is_spelled_out_in_the_guest():
    """A marker seen in a console log can be searched for in the guest's source as it is
    printed: no marker is assembled from pieces."""
    sources = "".join(
        path.read_text(encoding="utf-8") for path in Path(guest.__file__).parent.rglob("*.py")
    )
    texts = [m.pattern.source for m in Contract.load().markers if m.pattern.is_text]
    assert "SELFTEST: statefs deny ok" in texts  # control: the list is the contract's
    for text in texts:
        assert f'"{text}"' in sources, text


def test_an_open_door_policy_fails_the_deny_proof(guest_run, capfd, monkeypatch):
    """A mutant statefsd whose policy allows everything: the deny step must FAIL, naming the
    first attempt that got through, and the boot record must not be claimed unchanged."""
    from guest.statefsd.policy import Policy

    monkeypatch.setattr(Policy, "allows", lambda self, uid, right, key: True)
    passed, lines = run_boot(guest_run, 1, NONCE, capfd)
    assert not passed
    assert "SELFTEST: statefs deny ok" not in lines
    fail = [line for line in lines if line.startswith("SELFTEST: statefs deny FAIL")]
    assert fail == ["SELFTEST: statefs deny FAIL app: read device key seed gave success, "
                    "expected EACCES"], lines  # fmt: skip
    assert judge(lines, 1).failure.pattern_id == "selftest-fail"
