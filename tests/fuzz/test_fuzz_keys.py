"""The key normalizer with arbitrary str and bytes: the one gate between clients and the journal.

Every key the store writes has passed ``normalize_key``; replay re-checks keys read from disk
with ``is_normal_key``. If the two disagreed, a key accepted on write could make replay call a
valid journal corrupt (or the other way round). Properties, for any input:

* ``normalize_key``/``normalize_prefix`` return a str or raise :class:`StatefsError` (EINVAL or
  ENAMETOOLONG), never anything else;
* they are idempotent, and a normal key is accepted by ``is_normal_key``;
* ``is_normal_key(k)`` holds exactly when ``normalize_key(k) == k``;
* bytes and their UTF-8 decoding normalize alike; a normal key stays under ``/state/`` with no
  ``.``/``..`` component, no NUL or control character, within the length limits.
"""

from __future__ import annotations

import errno

from hypothesis import given
from hypothesis import strategies as st

from guest.statefs import MAX_KEY_BYTES, MAX_NAME_BYTES, StatefsError, normalize_key
from guest.statefs.paths import is_normal_key, normalize_prefix

from support.fuzzing import fuzz_settings, seed_decorator
from support.tally import Outcomes, outcome_name

PARTS = st.sampled_from(
    [
        "",
        "state",
        "state",
        "a",
        ".",
        "..",
        "...",
        "é",
        "\x00",
        "\x1f",
        "\x7f",
        "\udcff",
        " ",
        "x" * 255,
        "x" * 256,
        "é" * 128,
        "\u2028",
        "\\",
        "%2e%2e",
        "etc",
        "passwd",
    ]
) | st.text(max_size=8)
PATHS = st.lists(PARTS, max_size=8).map("/".join) | st.lists(PARTS, max_size=6).map(
    lambda parts: "/" + "/".join(parts)
)
LONG = st.integers(1, 5000).map(lambda n: "/state/" + ("abc/" * n)[:n])
TEXT = PATHS | st.text(max_size=80) | LONG
RAW = TEXT.map(lambda text: text.encode("utf-8", "surrogateescape")) | st.binary(max_size=80)
ANY = TEXT | RAW | st.builds(bytearray, RAW) | st.builds(memoryview, RAW)

OK_ERRNOS = {errno.EINVAL, errno.ENAMETOOLONG}


def _check_normal(normal: str, *, is_key: bool) -> None:
    assert isinstance(normal, str)
    encoded = normal.encode("utf-8")  # never a lone surrogate
    assert len(encoded) <= MAX_KEY_BYTES
    parts = normal.split("/")
    assert parts[0] == "" and parts[1] == "state"
    assert len(parts) >= (3 if is_key else 2)
    for part in parts[1:]:
        assert part not in ("", ".", "..")
        assert len(part.encode("utf-8")) <= MAX_NAME_BYTES
        assert not any(ord(ch) < 0x20 or ch == "\x7f" for ch in part)


def test_normalize_key_with_arbitrary_input():
    outcomes = Outcomes(
        "Fuzz",
        "normalize_key / is_normal_key",
        "arbitrary str, bytes, path-like mixes of ./../NUL/surrogates/long parts",
    )

    @fuzz_settings(3000)
    @seed_decorator()
    @given(ANY)
    def run(key) -> None:
        try:
            normal = normalize_key(key)
        except StatefsError as exc:
            assert exc.errno in OK_ERRNOS, exc
            outcomes.count(outcome_name(exc))
            if isinstance(key, str):
                assert not is_normal_key(key)
            return
        outcomes.count("normalized")
        _check_normal(normal, is_key=True)
        assert normalize_key(normal) == normal, "not idempotent"
        assert is_normal_key(normal)
        if isinstance(key, str):
            assert is_normal_key(key) == (normal == key)
            assert normalize_key(key.encode("utf-8")) == normal
        else:
            assert normalize_key(bytes(key).decode("utf-8")) == normal

    run()
    outcomes.commit()


def test_is_normal_key_agrees_with_normalize_key():
    outcomes = Outcomes(
        "Fuzz",
        "normalize_key / is_normal_key",
        "arbitrary str: is_normal_key(k) iff normalize_key(k) == k",
    )

    @fuzz_settings(2000)
    @seed_decorator()
    @given(TEXT)
    def run(key: str) -> None:
        try:
            normal = normalize_key(key)
        except StatefsError:
            normal = None
        assert is_normal_key(key) == (normal == key), f"disagree on {key!r}"
        outcomes.count("agree (normal)" if normal == key else "agree (not normal)")

    run()
    outcomes.commit()


def test_normalize_prefix_with_arbitrary_input():
    outcomes = Outcomes("Fuzz", "normalize_prefix", "arbitrary str and bytes")

    @fuzz_settings(1500)
    @seed_decorator()
    @given(ANY)
    def run(prefix) -> None:
        try:
            normal = normalize_prefix(prefix)
        except StatefsError as exc:
            assert exc.errno in OK_ERRNOS, exc
            outcomes.count(outcome_name(exc))
            return
        outcomes.count("normalized")
        _check_normal(normal, is_key=False)
        assert normalize_prefix(normal) == normal
        if normal != "/state":
            assert normalize_key(normal) == normal

    run()
    outcomes.commit()


def test_other_types_are_einval():
    outcomes = Outcomes("Fuzz", "normalize_key / is_normal_key", "non-str/bytes key types")
    for key in (None, 7, 1.5, ["/state/a"], ("/state", "a"), {"/state/a": 1}, object()):
        for normalize in (normalize_key, normalize_prefix):
            try:
                normalize(key)
            except StatefsError as exc:
                assert exc.errno == errno.EINVAL
                outcomes.count(outcome_name(exc))
            else:
                raise AssertionError(f"{key!r} accepted")
    outcomes.commit()
