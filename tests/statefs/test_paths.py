"""Key normalization: one normal form, and a clear errno for everything else."""

import errno

import pytest

from guest.statefs import MAX_KEY_BYTES, MAX_NAME_BYTES, StatefsError
from guest.statefs.paths import is_normal_key, normalize_key, normalize_prefix


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/state/a", "/state/a"),
        ("/state//boot///active", "/state/boot/active"),
        ("/state/boot/", "/state/boot"),
        ("//state/x", "/state/x"),
        (b"/state/bytes", "/state/bytes"),
        ("/state/ünï/cödé", "/state/ünï/cödé"),
        ("/state/a.b/..c/...", "/state/a.b/..c/..."),
    ],
)
def test_normal_forms(raw, normal):
    assert normalize_key(raw) == normal
    assert is_normal_key(normal)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("state/a", errno.EINVAL),
        ("/etc/passwd", errno.EINVAL),
        ("/state", errno.EINVAL),
        ("/state/", errno.EINVAL),
        ("/", errno.EINVAL),
        ("", errno.EINVAL),
        ("/state/../etc", errno.EINVAL),
        ("/state/./a", errno.EINVAL),
        ("/state/a/..", errno.EINVAL),
        ("/state/a\x00b", errno.EINVAL),
        ("/state/a\nb", errno.EINVAL),
        ("/state/a\x7fb", errno.EINVAL),
        ("/state/a\x85", errno.EINVAL),
        ("/state/a\x9b[2J", errno.EINVAL),
        ("/state/a\x80", errno.EINVAL),
        ("/state/a\x9f", errno.EINVAL),
        ("/state/a\u202etxt.exe", errno.EINVAL),
        ("/state/a\u2066b", errno.EINVAL),
        ("/state/a\u2028b", errno.EINVAL),
        ("/state/a\u200fb", errno.EINVAL),
        ("/state/a\x85".encode(), errno.EINVAL),
        (b"/state/\xff\xfe", errno.EINVAL),
        ("/state/\udcff", errno.EINVAL),
        ("/state/" + "n" * (MAX_NAME_BYTES + 1), errno.ENAMETOOLONG),
        ("/state/" + "/".join(["d" * 200] * 3), errno.ENAMETOOLONG),
        ("/state/" + "/" * 5000 + "a", errno.ENAMETOOLONG),
        (42, errno.EINVAL),
        (None, errno.EINVAL),
    ],
)
def test_rejections_carry_errno(raw, code):
    with pytest.raises(StatefsError) as info:
        normalize_key(raw)
    assert info.value.errno == code


def test_longest_key_is_accepted_and_one_more_byte_is_not():
    parts, total = [], len("/state")
    while total + 1 + 250 <= MAX_KEY_BYTES:
        parts.append("p" * 250)
        total += 251
    parts.append("x" * (MAX_KEY_BYTES - total - 1))
    key = "/state/" + "/".join(parts)
    assert len(key.encode()) == MAX_KEY_BYTES
    assert normalize_key(key) == key
    with pytest.raises(StatefsError) as info:
        normalize_key(key + "y")
    assert info.value.errno == errno.ENAMETOOLONG


def test_component_limit_counts_utf8_bytes_not_characters():
    key = "/state/" + "é" * 128  # 128 characters, 256 bytes
    with pytest.raises(StatefsError) as info:
        normalize_key(key)
    assert info.value.errno == errno.ENAMETOOLONG
    assert not is_normal_key(key)


def test_prefix_allows_the_root():
    assert normalize_prefix("/state/") == "/state"
    assert normalize_prefix("/state//boot/") == "/state/boot"
    with pytest.raises(StatefsError):
        normalize_prefix("/other")


@pytest.mark.parametrize(
    "key", ["/state/a/", "/state//a", "/state/./a", "/state", "/state/\x01", "/stateful/a"]
)
def test_fast_check_rejects_every_non_normal_form(key):
    assert not is_normal_key(key)


def test_every_forbidden_character_is_rejected_and_its_neighbours_are_not():
    """C0, DEL, C1, U+2028/9 and the bidi formatting characters, each alone; the characters
    just outside those ranges (U+00A0, U+00A9, U+202F, U+2065, U+206A) stay allowed."""
    from guest.statefs.paths import FORBIDDEN_CHARACTERS

    assert len(FORBIDDEN_CHARACTERS) == 32 + 1 + 32 + 5 + 5 + 4
    for char in FORBIDDEN_CHARACTERS:
        with pytest.raises(StatefsError) as info:
            normalize_key(f"/state/x{char}y")
        assert info.value.errno == errno.EINVAL
        assert f"U+{ord(char):04X}" in info.value.strerror
        assert not is_normal_key(f"/state/x{char}y")
    for char in "\u00a0\u00a9\u202f\u2065\u206a\u200d":
        assert normalize_key(f"/state/x{char}y") == f"/state/x{char}y"


def test_the_store_rejects_a_c1_key_everywhere(store):
    for action in (
        lambda: store.put("/state/a\x9b[2J", b"v"),
        lambda: store.write_batch([("/state/a\x85", b"v")]),
        lambda: store.get("/state/a\x85"),
        lambda: store.delete("/state/\u202e"),
    ):
        with pytest.raises(StatefsError) as info:
            action()
        assert info.value.errno == errno.EINVAL
    assert len(store) == 0
