"""Key paths: every key is an absolute path under ``/state/``, kept in one normal form.

Normalizing once, at the API boundary, means the journal and the in-memory index only ever see
normal keys: ``/state//boot/`` and ``/state/boot`` are the same key, and a key that cannot be
normalized (``..``, NUL, invalid UTF-8, control characters, too long) is rejected with an errno
before it can reach the disk. Limits are named constants quoted by ``docs/storage/statefs.md``.

Keys get printed: in logs, on the serial console, by the offline tool. So a key may not hold
what a terminal or a text renderer would act on instead of showing: the C0 and C1 control
characters and DEL (``\x1b[2J`` and its one-character form ``\x9b2J`` clear a screen), the
line and paragraph separators U+2028 and U+2029, and the bidirectional formatting characters
(U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069), with which ``/state/a\u202etxt.exe``
displays as something it is not. Everything else in Unicode is allowed, byte for byte: keys are
not Unicode-normalized (NFC and NFD spellings are two keys).
"""

import errno
import re

from guest.statefs.errors import StatefsError

STATE_ROOT = "/state"
#: Longest normalized key, in UTF-8 bytes (the journal stores key lengths as u16).
MAX_KEY_BYTES = 512
#: Longest single path component, in UTF-8 bytes (NAME_MAX).
MAX_NAME_BYTES = 255
#: Longest raw input accepted for normalization (PATH_MAX); bounds the work done on bad input.
MAX_RAW_KEY_BYTES = 4096

#: Characters no key may hold (see the module docstring): C0, DEL, C1, U+2028/U+2029, and
#: the bidirectional formatting characters.
FORBIDDEN_CHARACTERS = frozenset(
    [chr(code) for code in (*range(0x20), *range(0x7F, 0xA0))]
    + ["\u061c", "\u200e", "\u200f", "\u2028", "\u2029"]
    + [chr(code) for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
)
_FORBIDDEN = FORBIDDEN_CHARACTERS

#: An ASCII key in normal form, in one regular expression (replay's and put's fast path).
NORMAL_ASCII_KEY = re.compile(r"/state(?:/(?!\.\.?(?:/|$))[^/\x00-\x1f\x7f]{1,255})+")


def _as_text(key: object) -> str:
    if isinstance(key, bytes | bytearray | memoryview):
        raw = bytes(key)
        if len(raw) > MAX_RAW_KEY_BYTES:
            raise StatefsError(errno.ENAMETOOLONG, f"key longer than {MAX_RAW_KEY_BYTES} bytes")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StatefsError(errno.EINVAL, f"key is not valid UTF-8: {exc.reason}") from None
    if isinstance(key, str):
        if len(key) > MAX_RAW_KEY_BYTES:
            raise StatefsError(errno.ENAMETOOLONG, f"key longer than {MAX_RAW_KEY_BYTES} bytes")
        return key
    raise StatefsError(errno.EINVAL, f"key must be str or bytes, not {type(key).__name__}")


def _components(text: str) -> list[str]:
    if not text.startswith("/"):
        raise StatefsError(errno.EINVAL, f"key must be an absolute path under {STATE_ROOT}/")
    if not _FORBIDDEN.isdisjoint(text):
        found = min(_FORBIDDEN.intersection(text))
        raise StatefsError(
            errno.EINVAL,
            f"key contains U+{ord(found):04X}: NUL, a control character, a line separator or a "
            "bidirectional formatting character",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise StatefsError(errno.EINVAL, "key contains a lone surrogate (not UTF-8)") from None
    parts = [part for part in text.split("/") if part]
    for part in parts:
        if part in (".", ".."):
            raise StatefsError(errno.EINVAL, "key contains a '.' or '..' component")
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise StatefsError(
                errno.ENAMETOOLONG, f"key component longer than {MAX_NAME_BYTES} bytes"
            )
    if not parts or parts[0] != STATE_ROOT[1:]:
        raise StatefsError(errno.EINVAL, f"key must be under {STATE_ROOT}/")
    return parts


def normalize_key(key: str | bytes) -> str:
    """Return the normal form of ``key`` or raise :class:`StatefsError`.

    ``//`` runs collapse and a trailing ``/`` is dropped; the key must name something below
    ``/state`` (``/state`` itself is not a key).
    """
    parts = _components(_as_text(key))
    if len(parts) < 2:
        raise StatefsError(errno.EINVAL, f"key must name an entry below {STATE_ROOT}/")
    normal = "/" + "/".join(parts)
    if len(normal.encode("utf-8")) > MAX_KEY_BYTES:
        raise StatefsError(errno.ENAMETOOLONG, f"key longer than {MAX_KEY_BYTES} bytes")
    return normal


def normalize_prefix(prefix: str | bytes) -> str:
    """Normal form of a listing prefix: like a key, but ``/state`` itself is allowed."""
    parts = _components(_as_text(prefix))
    normal = "/" + "/".join(parts)
    if len(normal.encode("utf-8")) > MAX_KEY_BYTES:
        raise StatefsError(errno.ENAMETOOLONG, f"prefix longer than {MAX_KEY_BYTES} bytes")
    return normal


def is_normal_key(key: str) -> bool:
    """True if ``key`` is already in normal form (fast path for ASCII keys)."""
    if key.isascii():
        return NORMAL_ASCII_KEY.fullmatch(key) is not None and len(key) <= MAX_KEY_BYTES
    try:
        return normalize_key(key) == key
    except OSError:
        return False
