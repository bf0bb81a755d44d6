"""statefsd's access policy: which identity may read, write or list under which ``/state`` prefix.

The policy is data, one file (``access.policy`` beside this module, documented in
``docs/storage/ipc-protocol.md``), read once at start-up. Parsing is strict: an unknown word, an
unknown identity, a prefix that is not in normal form, a duplicate rule or an empty table is a
:class:`PolicyError` naming the line, and statefsd refuses to start on it; a policy that cannot
be read exactly as written must not become an open door.

Decisions are by uid (statefsd learns it from ``SO_PEERCRED``): the caller's grant with the
longest prefix covering the key decides, and no covering grant means no access.
"""

import errno
import os

from guest.identities import IDENTITIES
from guest.statefs.errors import StatefsError
from guest.statefs.paths import normalize_prefix

POLICY_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "access.policy")
#: A policy file larger than this is refused unread (the real one is under 2 KiB).
MAX_POLICY_BYTES = 64 * 1024

READ = "read"
WRITE = "write"
LIST = "list"
RIGHTS = frozenset((READ, WRITE, LIST))
ADMIN_OPS = frozenset(("reopen", "fsck", "stats"))
NONE: frozenset[str] = frozenset()


class PolicyError(StatefsError):
    """A policy file that cannot be accepted (EINVAL); the message names the line."""

    def __init__(self, source: str, line: int, message: str) -> None:
        where = f"{source} line {line}" if line else source
        super().__init__(errno.EINVAL, f"{where}: {message}")


def covers(prefix: str, key: str) -> bool:
    """Whether ``prefix`` covers ``key``: itself, or below it by whole path components."""
    return key == prefix or key.startswith(prefix + "/")


class Policy:
    """A validated policy: per identity, grants longest prefix first, and admin operations."""

    def __init__(
        self, grants: dict[str, list[tuple[str, frozenset]]], admin: dict[str, frozenset]
    ) -> None:
        self._grants: dict[int, list[tuple[str, frozenset]]] = {}
        for name, rules in grants.items():
            ordered = sorted(rules, key=lambda rule: len(rule[0]), reverse=True)
            self._grants[IDENTITIES[name].uid] = ordered
        self._admin = {IDENTITIES[name].uid: ops for name, ops in admin.items()}

    @classmethod
    def load(cls, path: str = POLICY_PATH) -> "Policy":
        """Read and validate a policy file; PolicyError (EINVAL) or the OSError of reading it."""
        with open(path, "rb") as handle:
            data = handle.read(MAX_POLICY_BYTES + 1)
        if len(data) > MAX_POLICY_BYTES:
            raise PolicyError(path, 0, f"larger than {MAX_POLICY_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError(path, 0, "not UTF-8") from None
        return cls.parse(text, source=path)

    @classmethod
    def parse(cls, text: str, *, source: str = "<policy>") -> "Policy":
        grants: dict[str, list[tuple[str, frozenset]]] = {}
        admin: dict[str, frozenset] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            words = raw.split("#", 1)[0].split()
            if not words:
                continue
            verb, args = words[0], words[1:]
            if verb == "grant" and len(args) == 3:
                name, prefix, rights = args
                _identity(source, number, name)
                prefix = _prefix(source, number, prefix)
                rules = grants.setdefault(name, [])
                if any(seen == prefix for seen, _ in rules):
                    raise PolicyError(source, number, f"second grant for {name} on {prefix}")
                rules.append((prefix, _words(source, number, rights, RIGHTS, "right")))
            elif verb == "admin" and len(args) == 2:
                name, ops = args
                _identity(source, number, name)
                if name in admin:
                    raise PolicyError(source, number, f"second admin line for {name}")
                admin[name] = _words(source, number, ops, ADMIN_OPS, "admin operation")
            elif verb in ("grant", "admin"):
                usage = "grant <identity> <prefix> <rights>" if verb == "grant" else (
                    "admin <identity> <ops>")  # fmt: skip
                raise PolicyError(source, number, f"expected '{usage}'")
            else:
                raise PolicyError(source, number, f"unknown statement {verb!r}")
        if not any(rights for rules in grants.values() for _, rights in rules):
            raise PolicyError(source, 0, "grants nothing to anyone")
        return cls(grants, admin)

    # -- decisions -------------------------------------------------------------------------

    def rights(self, uid: int, key: str) -> frozenset:
        """What ``uid`` may do with the normal key (or prefix) ``key``."""
        for prefix, rights in self._grants.get(uid, ()):
            if covers(prefix, key):
                return rights
        return NONE

    def allows(self, uid: int, right: str, key: str) -> bool:
        return right in self.rights(uid, key)

    def allows_admin(self, uid: int, op: str) -> bool:
        return op in self._admin.get(uid, NONE)

    def writes_anywhere(self, uid: int) -> bool:
        """Whether ``uid`` may write some key (what SYNC asks: it commits only writes)."""
        return any(WRITE in rights for _, rights in self._grants.get(uid, ()))


def _identity(source: str, number: int, name: str) -> None:
    if name not in IDENTITIES:
        known = ", ".join(sorted(IDENTITIES))
        raise PolicyError(source, number, f"unknown identity {name!r} (known: {known})")


def _prefix(source: str, number: int, prefix: str) -> str:
    try:
        normal = normalize_prefix(prefix)
    except StatefsError as exc:
        raise PolicyError(source, number, f"bad prefix {prefix!r}: {exc.strerror}") from None
    if normal != prefix:
        raise PolicyError(source, number, f"prefix {prefix!r} is not in normal form ({normal})")
    return normal


def _words(source: str, number: int, text: str, allowed: frozenset, kind: str) -> frozenset:
    if text == "none":
        return NONE
    words = text.split(",")
    unknown = [word for word in words if word not in allowed]
    if unknown:
        known = ",".join(sorted(allowed))
        raise PolicyError(source, number, f"unknown {kind} {unknown[0]!r} (known: {known})")
    if len(set(words)) != len(words):
        raise PolicyError(source, number, f"a {kind} is named twice in {text!r}")
    return frozenset(words)
