"""Key paths: every key is an absolute path under ``/state/``, kept in one normal form.

Normalizing once, at the API boundary, means the journal and the in-memory index only ever see
normal keys: ``/state//boot/`` and ``/state/boot`` are the same key, and a key that cannot be
normalized (``..``, NUL, invalid UTF-8, control characters, too long) is rejected with an errno
before it can reach the disk. Limits are named constants quoted by ``docs/storage/statefs.md``.
"""

import errno

from guest.statefs.errors import StatefsError

STATE_ROOT = "/state"
#: Longest normalized key, in UTF-8 bytes (the journal stores key lengths as u16).
MAX_KEY_BYTES = 512
#: Longest single path component, in UTF-8 bytes (NAME_MAX).
MAX_NAME_BYTES = 255
#: Longest raw input accepted for normalization (PATH_MAX); bounds the work done on bad input.
MAX_RAW_KEY_BYTES = 4096

_FORBIDDEN = {chr(code) for code in range(0x20)} | {"\x7f"}


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
        raise StatefsError(errno.EINVAL, "key contains NUL or a control character")
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
