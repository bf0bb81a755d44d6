"""The access policy file: parsing is strict, decisions follow the most specific prefix.

Pure tests (no sockets): the shipped table's decisions for each identity, prefix boundaries by
whole components, every kind of malformed line named with its line number, and statefsd
refusing to start on a malformed policy with one fatal line, without touching the device.
"""

import errno
from pathlib import Path

import pytest

from guest.identities import APP, INIT, KEYSTORED, STATEFSD, UPDATED
from guest.statefs import FileBlockDevice
from guest.statefsd.policy import POLICY_PATH, Policy, PolicyError
from guest.statefsd.server import run_daemon

SHIPPED = Policy.load()

#: The shipped policy, written out by hand: (identity, key) -> rights. Anything not listed
#: has none.
EXPECTED = {
    (KEYSTORED, "/state/keystore/device/seed"): {"read", "write", "list"},
    (KEYSTORED, "/state/keystore/device/meta"): {"read", "write", "list"},
    (INIT, "/state/other"): {"read", "write", "list"},
    (UPDATED, "/state/boot/bootctl"): {"read", "write", "list"},
    (INIT, "/state/boot/bootctl"): {"read", "list"},
    (INIT, "/state/selftest/probe"): {"read", "write", "list"},
    (INIT, "/state/app/x"): {"read", "write", "list"},
    (INIT, "/state/keystorex"): {"read", "write", "list"},  # not under /state/keystore
    (APP, "/state/app/x"): {"read", "write", "list"},
}
KEYS = sorted({key for _, key in EXPECTED} | {"/state/keystore/device/meta", "/state/other"})
WHO = (INIT, STATEFSD, KEYSTORED, UPDATED, APP)


@pytest.mark.parametrize("who", WHO, ids=lambda identity: identity.name)
def test_the_shipped_policy_decides_as_written(who):
    for key in KEYS:
        wanted = EXPECTED.get((who, key), set())
        assert set(SHIPPED.rights(who.uid, key)) == wanted, (who.name, key)


def test_admin_rights_are_init_only_and_unknown_uids_get_nothing():
    for op in ("reopen", "fsck", "stats"):
        assert SHIPPED.allows_admin(INIT.uid, op)
        assert not any(SHIPPED.allows_admin(who.uid, op) for who in WHO if who is not INIT)
    assert SHIPPED.rights(4242, "/state/app/x") == frozenset()
    assert not SHIPPED.writes_anywhere(4242)
    assert not SHIPPED.writes_anywhere(STATEFSD.uid)  # the server is nobody's client
    assert SHIPPED.writes_anywhere(APP.uid)


def test_the_most_specific_prefix_wins_either_way():
    policy = Policy.parse(
        "grant app /state read\n"
        "grant app /state/a read,write\n"
        "grant app /state/a/b none\n"
        "grant app /state/a/b/c list\n"
    )
    assert policy.rights(APP.uid, "/state/x") == {"read"}
    assert policy.rights(APP.uid, "/state/a") == {"read", "write"}
    assert policy.rights(APP.uid, "/state/a/bb") == {"read", "write"}  # component boundary
    assert policy.rights(APP.uid, "/state/a/b/x") == frozenset()
    assert policy.rights(APP.uid, "/state/a/b/c/d") == {"list"}


MALFORMED = {
    "unknown statement": ("grant app /state/app read\nallow app /state read\n", 2),
    "unknown identity": ("grant mallory /state read\n", 1),
    "unknown right": ("grant app /state/app read,wrte\n", 1),
    "right twice": ("grant app /state/app read,read\n", 1),
    "missing field": ("grant app /state/app\n", 1),
    "extra field": ("grant app /state/app read now\n", 1),
    "outside /state": ("grant app /etc read\n", 1),
    "non-normal prefix": ("grant app /state//app read\n", 1),
    "trailing slash": ("grant app /state/app/ read\n", 1),
    "traversal": ("grant app /state/../etc read\n", 1),
    "second grant": ("grant app /state/app read\ngrant app /state/app write\n", 2),
    "unknown admin op": ("grant app /state/app read\nadmin app reopen,format\n", 2),
    "second admin": ("grant app /state/a read\nadmin app stats\nadmin app fsck\n", 3),
    "grants nothing": ("# only a comment\ngrant app /state none\n", 0),
    "empty": ("", 0),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_policy_is_refused_naming_the_line(case):
    text, line = MALFORMED[case]
    with pytest.raises(PolicyError) as caught:
        Policy.parse(text, source="test.policy")
    assert caught.value.errno == errno.EINVAL
    where = f"test.policy line {line}:" if line else "test.policy:"
    assert caught.value.strerror.startswith(where), caught.value.strerror


def test_comments_and_blank_lines_are_ignored():
    policy = Policy.parse("\n# x\n   grant app /state/app read  # trailing comment\n\n")
    assert policy.rights(APP.uid, "/state/app/k") == {"read"}


def test_the_shipped_file_parses_as_loaded(tmp_path):
    copy = tmp_path / "copy.policy"
    copy.write_bytes(Path(POLICY_PATH).read_bytes())
    loaded = Policy.load(str(copy))
    for who in WHO:
        for key in KEYS:
            assert loaded.rights(who.uid, key) == SHIPPED.rights(who.uid, key)


@pytest.mark.parametrize(
    ("content", "fatal"),
    [
        (b"grant app /state/app read,wrte\n", "statefsd: fatal EINVAL policy {path} line 1: "),
        (b"\xff\xfe", "statefsd: fatal EINVAL policy {path}: not UTF-8"),
        (b"# " + b"x" * (64 * 1024), "statefsd: fatal EINVAL policy {path}: larger than"),
        (None, "statefsd: fatal ENOENT policy {path}: "),
    ],
    ids=["bad right", "not utf-8", "too large", "missing"],
)
def test_statefsd_refuses_to_start_on_a_bad_policy(tmp_path, capfd, content, fatal):
    disk = tmp_path / "disk.img"
    FileBlockDevice.create(disk, 4 << 20).close()
    before = disk.read_bytes()
    path = tmp_path / "bad.policy"
    if content is not None:
        path.write_bytes(content)
    code = run_daemon(str(disk), str(tmp_path / "s.sock"), policy_path=str(path))
    lines = capfd.readouterr().out.splitlines()
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(fatal.format(path=path)), lines
    assert disk.read_bytes() == before  # not formatted, not opened for writing
    assert not (tmp_path / "s.sock").exists()
