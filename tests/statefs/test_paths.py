"""Key normalization: one normal form, and a clear errno for everything else."""

import errno

import pytest

from guest.statefs import MAX_KEY_BYTES, MAX_NAME_BYTES, StatefsError
from guest.statefs.paths import normalize_key, normalize_prefix
from guest.statefs.replay import is_normal_key


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
