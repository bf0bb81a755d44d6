"""The strict match policy: what must *not* appear on the console, as data in the contract.

The matcher is order-tolerant and ignores unknown lines, which keeps it robust against kernel
noise but lets drift through: a guest that starts printing a new ``SELFTEST:`` line, prints a
proof twice, or formats a disk it should have found goes unnoticed while every required marker
still arrives. Three rules close that gap, each declared in ``contract.toml``:

* ``[[forbidden]]`` entries: a line matching one, in a boot it names, fails that boot
  (``statefsd: formatted`` in boot 2 means boot 1's store was lost);
* a marker's ``max_count``: more arrivals in one boot than that fail the boot;
* ``[match] strict_namespaces``: a line of a declared namespace (``SELFTEST: ``) that no
  pattern of the contract knows (no marker, failure pattern or forbidden line of any boot)
  fails the boot, so a guest/contract mismatch shows on the first run.

This module holds the rules and their parsing; the matcher asks :meth:`BootPolicy.violation`
once per line and applies ``max_count`` where it counts arrivals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ContractError


class BootScoped:
    """What a marker and a forbidden line share: a pattern, named by its id, and the boots it
    applies to (``None``: every boot). The dataclasses below and ``spec.Marker`` declare the
    two fields."""

    pattern: Any  # harness.contract.spec.Pattern (not imported: spec imports this module)
    boots: frozenset[int] | None

    @property
    def id(self) -> str:
        return self.pattern.id

    def in_boot(self, number: int) -> bool:
        return self.boots is None or number in self.boots


@dataclass(frozen=True)
class Forbidden(BootScoped):
    """A console line that must not appear in the boots it names (every boot if ``None``)."""

    pattern: Any
    boots: frozenset[int] | None = None
    reason: str = ""


@dataclass(frozen=True)
class MatchPolicy:
    """The contract-wide policy: forbidden lines and strict namespaces."""

    forbidden: tuple[Forbidden, ...] = ()
    strict_namespaces: tuple[str, ...] = ()

    def for_boot(self, number: int, known: Sequence[Any]) -> BootPolicy:
        """The policy one boot applies; ``known``: every pattern of the contract."""
        return BootPolicy(
            forbidden=tuple(f for f in self.forbidden if f.in_boot(number)),
            strict_namespaces=self.strict_namespaces,
            known=tuple(known) + tuple(f.pattern for f in self.forbidden),
        )


@dataclass(frozen=True)
class BootPolicy:
    """What one boot's matcher checks on every line (see the module docstring)."""

    forbidden: tuple[Forbidden, ...] = ()
    strict_namespaces: tuple[str, ...] = ()
    known: tuple[Any, ...] = field(default=(), repr=False)

    def violation(self, line: str, *, matched: bool) -> tuple[str, str] | None:
        """``(id, reason)`` if ``line`` breaks the policy; ``matched``: a marker of this boot
        matched it already."""
        for entry in self.forbidden:
            if entry.pattern.search(line):
                why = f": {entry.reason}" if entry.reason else ""
                return entry.id, f"forbidden line {entry.id!r}{why}"
        if matched or not self.strict_namespaces:
            return None
        namespace = namespace_of(line, self.strict_namespaces)
        if namespace is None or any(p.search(line) for p in self.known):
            return None
        return (
            f"unknown:{namespace.strip()}",
            f"line of the strict namespace {namespace!r} that the contract does not know",
        )


def namespace_of(line: str, namespaces: Iterable[str]) -> str | None:
    """The namespace ``line`` belongs to: it contains the namespace at its start or after
    whitespace or a ``]`` (kernel output may share the line), or ``None``."""
    for namespace in namespaces:
        start = line.find(namespace)
        while start != -1:
            if start == 0 or line[start - 1].isspace() or line[start - 1] == "]":
                return namespace
            start = line.find(namespace, start + 1)
    return None


def count_violation(marker_id: str, count: int, limit: int | None) -> str:
    """Why ``count`` arrivals of a marker break its ``max_count``, or ""."""
    if limit is None or count <= limit:
        return ""
    return f"marker {marker_id!r} arrived {count} times; max_count is {limit} per boot"


# -- parsing ---------------------------------------------------------------------------------
PatternOf = Callable[[Mapping[str, Any], str], Any]


def parse_policy(
    data: Mapping[str, Any],
    *,
    fail: Callable[[str], ContractError],
    pattern_of: PatternOf,
    boot_numbers: set[int],
) -> MatchPolicy:
    """The ``[match]`` table and the ``[[forbidden]]`` entries of a contract."""
    match = data.get("match", {})
    if not isinstance(match, dict):
        raise fail("match must be a table ([match])")
    extra = set(match) - {"strict_namespaces"}
    if extra:
        raise fail(f"[match]: unknown keys {sorted(extra)}")
    namespaces = match.get("strict_namespaces", [])
    if not isinstance(namespaces, list) or not all(
        isinstance(n, str) and n.strip() for n in namespaces
    ):
        raise fail("[match] strict_namespaces must be a list of non-empty strings")
    entries = data.get("forbidden", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise fail("forbidden must be an array of tables ([[forbidden]])")
    forbidden = []
    for entry in entries:
        extra = set(entry) - {"id", "text", "regex", "boots", "reason"}
        if extra:
            raise fail(f"forbidden {entry.get('id', '?')!r}: unknown keys {sorted(extra)}")
        pattern = pattern_of(entry, "forbidden")
        where = f"forbidden {pattern.id!r}"
        reason = entry.get("reason", "")
        if not isinstance(reason, str):
            raise fail(f"{where}: reason must be a string")
        boots = parse_boots(entry.get("boots"), where, fail=fail, boot_numbers=boot_numbers)
        forbidden.append(Forbidden(pattern, boots, reason))
    return MatchPolicy(tuple(forbidden), tuple(namespaces))


def parse_boots(
    value: Any, where: str, *, fail: Callable[[str], ContractError], boot_numbers: set[int]
) -> frozenset[int] | None:
    """A ``boots = [..]`` list: defined boot numbers, or ``None`` (every boot) if absent."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) for b in value
    ):
        raise fail(f"{where}: boots must be a list of boot numbers")
    missing = set(value) - boot_numbers
    if missing:
        raise fail(f"{where}: boots {sorted(missing)} are not defined")
    return frozenset(value)


def parse_max_count(value: Any, where: str, *, fail: Callable[[str], ContractError]) -> int | None:
    """A marker's ``max_count``: a positive integer, or ``None`` (no limit) if absent."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise fail(f"{where}: max_count must be a positive integer, got {value!r}")
    return value
