"""The strict match policy, phases and profiles: contract data, validation and verdicts
(recorded transcripts through the matcher; no VM)."""

import re

import pytest
from harness_helpers import transcript

from harness.contract.matcher import BootMatcher, Outcome
from harness.contract.phases import boots_until_phase, until_phase
from harness.contract.profiles import Settings
from harness.contract.spec import Contract
from harness.errors import ConfigError, ContractError

CONTRACT = Contract.load()

SMALL = """
version = 1
[[boot]]
number = 1
[[boot]]
number = 2
[[marker]]
id = "a"
text = "A: up"
[[marker]]
id = "b"
text = "A: b ok"
max_count = 1
[[marker]]
id = "c"
text = "A: c ok"
boots = [2]
[[marker]]
id = "opt"
text = "A: optional"
required = false
[[failure]]
id = "fail"
regex = 'A: .*FAIL'
[match]
strict_namespaces = ["A: "]
[[forbidden]]
id = "fresh"
text = "A: formatted"
boots = [2]
reason = "boot 2 must not format"
[[phase]]
name = "first"
markers = ["a"]
[[phase]]
name = "second"
markers = ["b", "c", "opt"]
[profile.default]
smp = 1
[profile.big]
extends = "default"
memory_mib = 1024
require = ["opt"]
[profile.bigger]
extends = "big"
smp = 4
timeout_multiplier = 2
optional = ["b"]
"""


def small() -> Contract:
    return Contract.loads(SMALL, source="small.toml")


def feed(matcher: BootMatcher, text: str) -> BootMatcher:
    for line in text.splitlines():
        matcher.feed_line(line, 1.0)
    matcher.finish("end of transcript")
    return matcher


# -- forbidden, max_count, strict namespaces ----------------------------------------------------
def test_forbidden_line_fails_only_the_boots_it_names():
    console = "A: up\nA: formatted\nA: b ok\nA: c ok\n"
    assert feed(BootMatcher(small().for_boot(1)), console.replace("A: c ok\n", "")).outcome is (
        Outcome.PASSED
    )
    matcher = feed(BootMatcher(small().for_boot(2)), console)
    assert matcher.outcome is Outcome.FAILED
    assert matcher.failure.pattern_id == "fresh"
    assert matcher.failure.line_no == 2
    assert "forbidden line 'fresh': boot 2 must not format" in matcher.report()


def test_the_shipped_contract_forbids_formatting_in_boot_2():
    text = transcript("boot2_pass.log").replace(
        "statefsd: ready", "statefsd: formatted /dev/vda (it held no store)\nstatefsd: ready", 1
    )
    boot1 = feed(BootMatcher(CONTRACT.for_boot(1)), transcript("boot1_pass.log"))
    assert boot1.outcome is Outcome.PASSED, boot1.report()
    matcher = feed(BootMatcher(CONTRACT.for_boot(2), pinned=boot1.pins_for_next_boot()), text)
    assert matcher.outcome is Outcome.FAILED
    assert matcher.failure.pattern_id == "reformatted"
    assert "boot 2 must find the store boot 1 wrote" in matcher.reason + matcher.failure.reason


def test_max_count_fails_the_second_arrival():
    matcher = feed(BootMatcher(small().for_boot(1)), "A: up\nA: b ok\nA: b ok\n")
    assert matcher.outcome is Outcome.FAILED
    assert matcher.failure.pattern_id == "b"
    assert matcher.failure.line_no == 3
    assert "arrived 2 times; max_count is 1" in matcher.failure.reason
    # Without a limit duplicates are fine (the first arrival counts).
    ok = feed(BootMatcher(small().for_boot(1)), "A: up\nA: up\nA: b ok\n")
    assert ok.outcome is Outcome.PASSED
    assert ok.counts["a"] == 2


def test_the_shipped_contract_allows_one_init_start_per_boot():
    text = transcript("boot1_pass.log") + "init: started (python 3.11.2)\n"
    matcher = feed(BootMatcher(CONTRACT.for_boot(1)), text)
    assert matcher.outcome is Outcome.FAILED
    assert matcher.failure.pattern_id == "init-started"


def test_unknown_line_of_a_strict_namespace_fails_the_boot():
    matcher = feed(BootMatcher(small().for_boot(1)), "A: up\nA: brand new line\nA: b ok\n")
    assert matcher.outcome is Outcome.FAILED
    assert matcher.failure.pattern_id == "unknown:A:"
    assert matcher.failure.line == "A: brand new line"
    assert "strict namespace 'A: '" in matcher.failure.reason


def test_strict_namespace_knows_every_pattern_of_every_boot():
    # "A: c ok" is a marker of boot 2 only, "A: formatted" forbidden in boot 2 only; in boot 1
    # both are known lines, not drift. Kernel text before the namespace still counts.
    console = "A: up\nA: c ok\nA: formatted\nA: b ok\n[    1.0] A: optional\n"
    matcher = feed(BootMatcher(small().for_boot(1)), console)
    assert matcher.outcome is Outcome.PASSED, matcher.report()


def test_the_shipped_contract_catches_a_new_selftest_line():
    text = transcript("boot1_pass.log").replace(
        "SELFTEST: statefs persist ok", "SELFTEST: statefs persist ok\nSELFTEST: fsck ok"
    )
    matcher = feed(BootMatcher(CONTRACT.for_boot(1)), text)
    assert matcher.outcome is Outcome.FAILED
    assert matcher.failure.line == "SELFTEST: fsck ok"
    assert matcher.failure.pattern_id == "unknown:SELFTEST:"


def test_a_prefix_inside_a_word_is_not_the_namespace():
    matcher = feed(BootMatcher(small().for_boot(1)), "XA: what\nA: up\nA: b ok\n")
    assert matcher.outcome is Outcome.PASSED, matcher.report()


# -- phases ------------------------------------------------------------------------------------
def test_report_names_the_first_phase_that_failed():
    text = transcript("boot1_selftest_fail.log")
    matcher = feed(BootMatcher(CONTRACT.for_boot(1)), text)
    assert matcher.outcome is Outcome.FAILED
    assert "phase 'store' failed first (complete: boot, services)" in matcher.report()


def test_a_missing_early_marker_fails_the_early_phase():
    text = "\n".join(
        line for line in transcript("boot1_pass.log").splitlines() if "virtio-blk up" not in line
    )
    matcher = feed(BootMatcher(CONTRACT.for_boot(1)), text)
    assert matcher.outcome is Outcome.INCOMPLETE
    assert "phase 'boot' failed first (complete: none)" in matcher.report()


def test_until_phase_stops_at_the_first_boot_with_that_phase():
    contract = small()
    assert boots_until_phase(contract, "first", (1, 2)) == (1,)
    assert boots_until_phase(contract, "second", (1, 2)) == (1,)
    boot = until_phase(contract.for_boot(1), "first")
    assert [m.id for m in boot.required] == ["a"]
    matcher = BootMatcher(boot)
    assert matcher.feed_line("A: up", 0.5) is Outcome.PASSED
    real = until_phase(CONTRACT.for_boot(2), "services")
    assert {m.id for m in real.required} == {"init-started", "blk", "statefsd-ready", "device-key"}
    assert boots_until_phase(CONTRACT, "reboot", (1, 2)) == (1, 2)
    with pytest.raises(ContractError, match="no phase 'nope'"):
        boots_until_phase(CONTRACT, "nope", (1, 2))


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ('[[phase]]\nname = "x"\nmarkers = ["zz"]\n', "phase 'x': no marker 'zz'"),
        ('[[phase]]\nname = "x"\nmarkers = ["a"]\ncolour = 1\n', "unknown keys ['colour']"),
        ('[[phase]]\nname = "first"\nmarkers = ["c"]\n', "duplicate phase name 'first'"),
        ('[[phase]]\nname = "x"\nmarkers = ["a"]\n', "'a' is already in 'first'"),
    ],
)
def test_phase_validation(snippet: str, message: str):
    with pytest.raises(ContractError, match=re.escape(message)):
        Contract.loads(SMALL + snippet)


def test_every_required_marker_needs_a_phase():
    text = SMALL.replace('markers = ["b", "c", "opt"]', 'markers = ["b", "opt"]')
    with pytest.raises(ContractError, match=re.escape("required markers in no phase: ['c']")):
        Contract.loads(text)


# -- validation of the other new tables ----------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[match]\n", "[match]\nstrict = true\n", "[match]: unknown keys ['strict']"),
        ('reason = "boot 2', 'why = "x"\nreason = "boot 2', "forbidden 'fresh': unknown keys"),
        ("boots = [2]\nreason", "boots = [3]\nreason", "forbidden 'fresh': boots [3] are not"),
        ("max_count = 1", "max_count = 0", "marker 'b': max_count must be a positive integer"),
        ("max_count = 1", "max_count = true", "max_count must be a positive integer"),
        ('id = "fresh"', 'id = "a"', "duplicate ids: ['a']"),
        ('strict_namespaces = ["A: "]', 'strict_namespaces = "A: "', "must be a list"),
        ("[profile.big]\n", "[profile.big]\ncpus = 2\n", "profile 'big': unknown keys ['cpus']"),
        ('extends = "big"', 'extends = "huge"', "extends 'huge', which is not a profile"),
        ('extends = "default"', 'extends = "bigger"', "extends forms a cycle"),
        ('require = ["opt"]', 'require = ["zz"]', "require names no marker ['zz']"),
        ("memory_mib = 1024", "memory_mib = 8", "memory_mib must be an integer in 16..65536"),
        (
            "timeout_multiplier = 2",
            "timeout_multiplier = 0",
            "timeout multiplier must be a number in (0, 1000]",
        ),
        (
            "timeout_multiplier = 2",
            "timeout_multiplier = 5000",
            "timeout multiplier must be a number in (0, 1000]",
        ),
        (
            "timeout_multiplier = 2",
            'timeout_multiplier = "2"',
            "timeout_multiplier must be a number",
        ),
        ("smp = 4", 'smp = 4\nicount = "shift auto"', "icount must be a QEMU -icount value"),
        ('optional = ["b"]', 'optional = ["b"]\nrequire = ["b"]', "both required and optional"),
    ],
)
def test_new_tables_reject_unknown_keys_and_bad_values(old: str, new: str, message: str):
    assert old in SMALL
    with pytest.raises(ContractError, match=re.escape(message)):
        Contract.loads(SMALL.replace(old, new, 1))


# -- profiles ------------------------------------------------------------------------------------
def test_profile_extends_and_its_marker_choices():
    contract = small()
    bigger = contract.profile("bigger")
    assert bigger.chain == ("bigger", "big", "default")
    assert bigger.settings == Settings(smp=4, memory_mib=1024, timeout_multiplier=2.0)
    lane = contract.with_profile("bigger")
    by_id = {m.id: m for m in lane.markers}
    assert by_id["opt"].required  # big requires it, bigger inherits that
    assert not by_id["b"].required  # bigger makes it optional
    assert lane.profile_name == "bigger"
    assert {m.id: m.required for m in small().markers}["opt"] is False  # the original stays


def test_caller_settings_fill_what_the_profile_leaves_open_and_contradictions_fail():
    big = small().profile("big")
    resolved = big.resolve(Settings(smp=None, icount="shift=auto", timeout_multiplier=3.0))
    assert resolved == Settings(smp=1, memory_mib=1024, icount="shift=auto", timeout_multiplier=3.0)
    assert big.resolve(Settings(memory_mib=1024)).memory_mib == 1024  # agreeing is fine
    with pytest.raises(ConfigError, match=r"--memory-mib 2048 contradicts profile 'big'"):
        big.resolve(Settings(memory_mib=2048))
    with pytest.raises(ConfigError, match="timeout multiplier 1.5 contradicts profile 'bigger'"):
        small().profile("bigger").resolve(Settings(timeout_multiplier=1.5))


def test_shipped_profiles():
    assert {"default", "smp2", "icount"} <= set(CONTRACT.profiles)
    assert CONTRACT.profile("smp2").settings.smp == 2
    icount = CONTRACT.profile("icount")
    assert icount.settings.icount == "shift=auto"
    assert icount.settings.smp == 1
    with pytest.raises(ConfigError, match="needs TCG"):
        icount.resolve(Settings(), accel="kvm")
    lane = CONTRACT.with_profile("icount")
    assert {m.id for m in lane.for_boot(1).required} >= {"init-done", "selftest-complete"}
    with pytest.raises(ContractError, match="no profile 'fast'"):
        CONTRACT.profile("fast")


def test_a_contract_without_profiles_still_has_the_default_lane():
    text = SMALL.split("[profile.default]")[0]
    contract = Contract.loads(text)
    assert contract.profile("default").settings == Settings()
    assert contract.with_profile("default").markers == contract.markers
