"""The contract file: what it says, and that bad data fails at load time with the entry's id."""

import re
import tomllib
from pathlib import Path

import pytest

from harness.contract.spec import DEFAULT_CONTRACT, BootContract, Contract
from harness.errors import ContractError

SEED_MARKERS = {
    "blk",
    "statefsd-ready",
    "statefs-put",
    "statefs-persist",
    "bootctl-persist",
    "device-key-persist",
}


def test_project_contract_boot_1_and_2():
    contract = Contract.load()
    assert contract.boot_numbers == (1, 2)
    boot1 = {m.id for m in contract.for_boot(1).required}
    boot2 = {m.id for m in contract.for_boot(2).required}
    assert boot1 >= SEED_MARKERS
    assert "reboot-persist" not in boot1
    assert boot2 == boot1 | {"reboot-persist"}
    assert contract.for_boot(1).kernel_args == (
        "sq.mode=contract",
        "sq.boot={boot}",
        "sq.nonce={nonce}",
    )


def test_seed_marker_texts_are_exact():
    contract = Contract.load()
    by_id = {m.id: m for m in contract.markers}
    assert by_id["statefsd-ready"].pattern.source == "statefsd: ready"
    assert by_id["reboot-persist"].pattern.source == "SELFTEST: reboot persist ok"
    blk = by_id["blk"].pattern.search("blk: virtio-blk up (ss=512 nsec=131072)")
    assert blk is not None
    assert blk.groupdict() == {"ss": "512", "nsec": "131072"}


@pytest.mark.parametrize(
    "line",
    [
        "SELFTEST: statefs put FAIL",
        "SELFTEST: bootctl persist FAIL: slot b lost",
        "Traceback (most recent call last):",
        "[    3.1] Kernel panic - not syncing: Attempted to kill init!",
        "statefsd: fatal: superblock CRC mismatch",
        "init: fatal RuntimeError: boom",
        "keystored: fatal cannot read /dev/hwrng",
    ],
)
def test_failure_patterns_catch_the_documented_lines(line):
    assert any(p.search(line) for p in Contract.load().failures), line


@pytest.mark.parametrize(
    "line",
    [
        "SELFTEST: statefs put ok",
        "statefsd: ready",
        "init: done, powering off",
        "updated: fataler things",
        "a FAILURE in prose",
    ],
)
def test_failure_patterns_leave_normal_lines_alone(line):
    assert not any(p.search(line) for p in Contract.load().failures), line


MINIMAL = """
version = 1
[[boot]]
number = 1
[[marker]]
id = "a"
text = "A ok"
"""


def test_minimal_contract_defaults():
    contract = Contract.loads(MINIMAL)
    boot = contract.for_boot(1)
    assert boot.timeout == 60
    assert boot.failures == ()
    assert [m.id for m in boot.required] == ["a"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[marker]]\nid = "a"\ntext = "again"\n', "duplicate ids"),
        ('[[marker]]\nid = "b"\nregex = "("\n', "b.*invalid regex"),
        ('[[marker]]\nid = "b"\ntext = "x"\nregex = "y"\n', "exactly one of text, prefix or regex"),
        ('[[marker]]\nid = "b"\ntext = "x"\nboots = [3]\n', r"boots \[3\] are not defined"),
        ('[[marker]]\nid = "b"\nregex = "x"\nsame_across_boots = ["g"]\n', "not a regex group"),
        (
            '[[marker]]\nid = "b"\nregex = "(?P<g>x)"\nexpect = { 1 = { h = "x" } }\n',
            "expect.1 names 'h'",
        ),
        ('[[marker]]\nid = "b"\ntext = "x"\ntimeout = -1\n', "timeout must be positive"),
        ('[[marker]]\nid = "b"\ntext = "x"\ncolour = "red"\n', "unknown keys"),
        ('[[failure]]\ntext = "x"\n', "needs an id"),
        ("[[boot]]\nnumber = 1\n", "duplicate boot numbers"),
    ],
)
def test_invalid_contracts_are_rejected_naming_the_entry(extra, message):
    with pytest.raises(ContractError, match=message):
        Contract.loads(MINIMAL + extra, source="test.toml")


def test_unknown_top_level_keys_are_rejected():
    with pytest.raises(ContractError, match=r"unknown top-level keys: \['surprise'\]"):
        Contract.loads("surprise = 1\n" + MINIMAL)


def test_a_boot_without_required_markers_is_rejected():
    text = (
        "[[boot]]\nnumber = 1\n[[boot]]\nnumber = 2\n"
        '[[marker]]\nid = "b"\ntext = "x"\nboots = [1]\n'
        '[[marker]]\nid = "c"\ntext = "y"\nrequired = false\n'
    )
    with pytest.raises(ContractError, match="boot 2 has no required marker"):
        Contract.loads(text)


def test_unreadable_contract_file(tmp_path: Path):
    with pytest.raises(ContractError, match="cannot read"):
        Contract.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[boot]\n")
    with pytest.raises(ContractError, match="bad.toml"):
        Contract.load(bad)


def test_adhoc_contract_uses_the_project_failure_patterns():
    boot = BootContract.of(["FAKE: a ok", re.compile(r"FAKE: n=(?P<n>\d+)")], timeout=5)
    assert [m.pattern.is_text for m in boot.markers] == [True, False]
    assert {p.id for p in boot.failures} == {p.id for p in Contract.load().failures}


def test_contract_file_lives_in_the_contract_package():
    """The contract ships inside ``harness.contract`` (package data), next to its loader."""
    import harness.contract

    assert DEFAULT_CONTRACT.parent == Path(harness.contract.__file__).parent
    assert DEFAULT_CONTRACT.name == "contract.toml"
    assert DEFAULT_CONTRACT.is_file()
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "contract.toml" in pyproject["tool"]["setuptools"]["package-data"]["harness.contract"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[run]\nfailure_grce = 2\n",
            r"\[run\]: unknown keys \['failure_grce'\] \(known: failure_grace\)",
        ),
        ("run = 5\n", r"run must be a table \(\[run\]\), got 5"),
        (
            "[[boot]]\nnumber = 3\ntimout = 9\n",
            r"boot 3: unknown keys \['timout'\] \(known: kernel_args, number, timeout\)",
        ),
    ],
)
def test_contract_typos_are_named_where_they_are(text, message):
    base = '[[boot]]\nnumber = 1\n[[marker]]\nid = "a"\ntext = "a ok"\n'
    with pytest.raises(ContractError, match=message):
        Contract.loads(text + base if text.startswith(("run =", "[run]")) else base + text)


def test_kernel_args_of_a_contract_boot_are_rendered():
    args = Contract.load().kernel_args(2, nonce="00112233aabbccdd")
    assert args == ("sq.mode=contract", "sq.boot=2", "sq.nonce=00112233aabbccdd")
    fresh = dict(arg.split("=", 1) for arg in Contract.load().kernel_args())
    assert re.fullmatch(r"[0-9a-f]{16}", fresh["sq.nonce"])
