"""The marker contract as data: load, validate, and hand out one boot's view.

The contract lives in ``contract.toml`` next to this module (see that file and
``docs/testing/markers.md``). Loading validates everything once: unique ids, compilable
patterns, boots that exist, expectations that name real regex groups. A typo therefore fails
at start-up with the entry's id, not as a marker that silently never matches.

Library users build small contracts in code with :meth:`BootContract.of` (a list of texts
and patterns plus the default failure patterns).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.contract.phases import Phase, check_coverage, parse_phases
from harness.contract.policy import (
    BootPolicy,
    BootScoped,
    MatchPolicy,
    parse_boots,
    parse_max_count,
    parse_policy,
)
from harness.contract.profiles import DEFAULT_PROFILE, Profile, parse_profiles
from harness.errors import ContractError
from harness.vm.kernel_args import new_nonce, render

DEFAULT_CONTRACT = Path(__file__).with_name("contract.toml")
SUPPORTED_VERSION = 1


@dataclass(frozen=True)
class Pattern:
    """One console pattern: ``text`` (the line ends with it), ``prefix`` (the text, then
    anything: ``blk: virtio-blk up`` matches ``blk: virtio-blk up (ss=512 nsec=131072)``) or
    ``regex`` (searched). Kernel output may share the line before any of them."""

    id: str
    regex: re.Pattern[str]
    source: str
    is_text: bool
    is_prefix: bool = False

    @classmethod
    def from_text(cls, pattern_id: str, text: str) -> Pattern:
        return cls(pattern_id, re.compile(re.escape(text) + r"\s*$"), text, True)

    @classmethod
    def from_prefix(cls, pattern_id: str, text: str) -> Pattern:
        return cls(pattern_id, re.compile(re.escape(text)), text, True, is_prefix=True)

    @classmethod
    def from_regex(cls, pattern_id: str, regex: str) -> Pattern:
        try:
            compiled = re.compile(regex)
        except re.error as exc:
            raise ContractError(f"{pattern_id}: invalid regex {regex!r}: {exc}") from exc
        return cls(pattern_id, compiled, regex, False)

    def search(self, line: str) -> re.Match[str] | None:
        return self.regex.search(line)

    @property
    def display(self) -> str:
        if self.is_prefix:
            return f"{self.source}..."
        return self.source if self.is_text else f"/{self.source}/"


@dataclass(frozen=True)
class Marker(BootScoped):
    """An expected console line; see contract.toml for the fields."""

    pattern: Pattern
    required: bool = True
    timeout: float | None = None
    boots: frozenset[int] | None = None  # None: every boot
    same_across_boots: tuple[str, ...] = ()
    expect: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    max_count: int | None = None  # arrivals allowed per boot (policy.py)


@dataclass(frozen=True)
class BootSpec:
    number: int
    kernel_args: tuple[str, ...]
    timeout: float


@dataclass(frozen=True)
class BootContract:
    """What one boot must show: the matcher's whole input besides the console."""

    number: int
    markers: tuple[Marker, ...]
    failures: tuple[Pattern, ...]
    timeout: float
    kernel_args: tuple[str, ...] = ()
    failure_grace: float = 0.5
    policy: BootPolicy = field(default_factory=BootPolicy)
    phases: tuple[Phase, ...] = ()

    @property
    def required(self) -> tuple[Marker, ...]:
        return tuple(m for m in self.markers if m.required)

    def expectations(self, marker: Marker) -> Mapping[str, str]:
        return marker.expect.get(self.number, {})

    @classmethod
    def of(
        cls,
        markers: Iterable[str | re.Pattern[str]],
        *,
        timeout: float = 60.0,
        failures: Sequence[Pattern] | None = None,
        number: int = 1,
    ) -> BootContract:
        """An ad-hoc contract: plain strings are text markers, compiled patterns regexes.

        Each marker's id is its own text (or regex), so a report names what is missing as it
        was written; a repeated one gets ``#2``. Failure patterns default to those of the
        project's contract file.
        """
        built = []
        seen: set[str] = set()
        for item in markers:
            source = item.pattern if isinstance(item, re.Pattern) else item
            marker_id, count = source, 1
            while marker_id in seen:
                count += 1
                marker_id = f"{source}#{count}"
            seen.add(marker_id)
            if isinstance(item, re.Pattern):
                built.append(Marker(Pattern(marker_id, item, item.pattern, False)))
            else:
                built.append(Marker(Pattern.from_text(marker_id, item)))
        if failures is None:
            failures = Contract.load().failures
        return cls(number=number, markers=tuple(built), failures=tuple(failures), timeout=timeout)


@dataclass(frozen=True)
class Contract:
    """The whole contract file: boots, markers, failure patterns."""

    boots: tuple[BootSpec, ...]
    markers: tuple[Marker, ...]
    failures: tuple[Pattern, ...]
    failure_grace: float
    source: str = "<data>"
    policy: MatchPolicy = field(default_factory=MatchPolicy)
    phases: tuple[Phase, ...] = ()
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    profile_name: str | None = None  # the profile applied by with_profile()

    @classmethod
    def load(cls, path: Path | None = None) -> Contract:
        path = path or DEFAULT_CONTRACT
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ContractError(f"cannot read the marker contract {path}: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def loads(cls, text: str, *, source: str = "<string>") -> Contract:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ContractError(f"{source}: invalid TOML: {exc}") from exc
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<data>") -> Contract:
        return _Parser(source).parse(data)

    def boot(self, number: int) -> BootSpec:
        for boot in self.boots:
            if boot.number == number:
                return boot
        raise ContractError(f"{self.source}: no boot {number} (boots: {self.boot_numbers})")

    @property
    def boot_numbers(self) -> tuple[int, ...]:
        return tuple(boot.number for boot in self.boots)

    def kernel_args(self, number: int = 1, nonce: str | None = None) -> tuple[str, ...]:
        """The kernel arguments boot ``number`` of this contract needs (``sq.mode``,
        ``sq.boot``, ``sq.nonce``...), rendered; ``nonce`` defaults to a fresh random one.

        What a library user passes to boot the guest in the contract's mode: without
        ``sq.nonce`` the guest refuses to start (``init: fatal ValueError: sq.nonce ...``).
        """
        values = {"nonce": nonce or new_nonce(), "boot": number}
        return render(self.boot(number).kernel_args, values)

    def for_boot(self, number: int) -> BootContract:
        spec = self.boot(number)
        return BootContract(
            number=number,
            markers=tuple(m for m in self.markers if m.in_boot(number)),
            failures=self.failures,
            timeout=spec.timeout,
            kernel_args=spec.kernel_args,
            failure_grace=self.failure_grace,
            policy=self.policy.for_boot(
                number, [m.pattern for m in self.markers] + [*self.failures]
            ),
            phases=self.phases,
        )

    def profile(self, name: str) -> Profile:
        """The resolved profile ``name``; :data:`DEFAULT_PROFILE` is implied if not declared."""
        if name in self.profiles:
            return self.profiles[name]
        if name == DEFAULT_PROFILE:
            return Profile(DEFAULT_PROFILE, chain=(DEFAULT_PROFILE,))
        known = ", ".join(self.profiles) or "none declared"
        raise ContractError(f"{self.source}: no profile {name!r} (profiles: {known})")

    def with_profile(self, name: str) -> Contract:
        """This contract with profile ``name``'s required-marker choices applied."""
        profile = self.profile(name)
        markers = profile.apply(self.markers)
        if self.phases:
            check_coverage(
                self.phases, markers, fail=lambda m: ContractError(f"profile {name!r}: {m}")
            )
        for number in self.boot_numbers:
            if not any(m.required and m.in_boot(number) for m in markers):
                raise ContractError(f"profile {name!r}: boot {number} has no required marker")
        return dataclasses.replace(self, markers=markers, profile_name=name)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str) -> ContractError:
        return ContractError(f"{self.source}: {message}")

    def parse(self, data: Mapping[str, Any]) -> Contract:
        version = data.get("version", SUPPORTED_VERSION)
        if version != SUPPORTED_VERSION:
            raise self.fail(f"version {version!r} is not supported (expected {SUPPORTED_VERSION})")
        unknown = set(data) - {
            "version",
            "run",
            "boot",
            "marker",
            "failure",
            "forbidden",
            "match",
            "phase",
            "profile",
        }
        if unknown:
            raise self.fail(f"unknown top-level keys: {sorted(unknown)}")
        run = data.get("run", {})
        if not isinstance(run, dict):
            raise self.fail(f"run must be a table ([run]), got {run!r}")
        unknown_run = set(run) - {"failure_grace"}
        if unknown_run:
            raise self.fail(f"[run]: unknown keys {sorted(unknown_run)} (known: failure_grace)")
        grace = self.number(run.get("failure_grace", 0.5), "run.failure_grace", allow_zero=True)
        boots = tuple(self.boot(entry) for entry in self.entries(data, "boot"))
        if not boots:
            raise self.fail("at least one [[boot]] is needed")
        numbers = [boot.number for boot in boots]
        if len(set(numbers)) != len(numbers):
            raise self.fail(f"duplicate boot numbers: {numbers}")
        markers = tuple(self.marker(entry, set(numbers)) for entry in self.entries(data, "marker"))
        failures = tuple(self.pattern(entry, "failure") for entry in self.entries(data, "failure"))
        for entry in self.entries(data, "failure"):
            self.no_extra(entry, {"id", "text", "regex"}, "failure")
        ids = [m.id for m in markers] + [f.id for f in failures]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise self.fail(f"duplicate ids: {duplicates}")
        for number in numbers:
            if not any(m.required and m.in_boot(number) for m in markers):
                raise self.fail(f"boot {number} has no required marker")
        policy = parse_policy(
            data, fail=self.fail, pattern_of=self.pattern, boot_numbers=set(numbers)
        )
        ids += [f.id for f in policy.forbidden]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise self.fail(f"duplicate ids: {duplicates}")
        phases = parse_phases(data, fail=self.fail, markers=markers)
        profiles = parse_profiles(data, fail=self.fail, marker_ids={m.id for m in markers})
        return Contract(boots, markers, failures, grace, self.source, policy, phases, profiles)

    def entries(self, data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
            raise self.fail(f"{key} must be an array of tables ([[{key}]])")
        return value

    def number(self, value: Any, where: str, *, allow_zero: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{where} must be a number, got {value!r}")
        if value < 0 or (value == 0 and not allow_zero):
            raise self.fail(f"{where} must be positive, got {value!r}")
        return float(value)

    def no_extra(
        self, entry: Mapping[str, Any], allowed: set[str], kind: str, name: object = None
    ) -> None:
        extra = set(entry) - allowed
        if extra:
            name = entry.get("id", "?") if name is None else name
            known = ", ".join(sorted(allowed))
            raise self.fail(f"{kind} {name!r}: unknown keys {sorted(extra)} (known: {known})")

    def boot(self, entry: Mapping[str, Any]) -> BootSpec:
        number = entry.get("number")
        self.no_extra(entry, {"number", "kernel_args", "timeout"}, "boot", number)
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise self.fail(f"boot number must be a positive integer, got {number!r}")
        args = entry.get("kernel_args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise self.fail(f"boot {number}: kernel_args must be a list of strings")
        timeout = self.number(entry.get("timeout", 60), f"boot {number} timeout")
        return BootSpec(number, tuple(args), timeout)

    def pattern(self, entry: Mapping[str, Any], kind: str) -> Pattern:
        pattern_id = entry.get("id")
        if not isinstance(pattern_id, str) or not pattern_id:
            raise self.fail(f"every {kind} needs an id (got {dict(entry)!r})")
        given = [key for key in ("text", "prefix", "regex") if key in entry]
        if kind == "failure" and "prefix" in given:
            raise self.fail(f"{kind} {pattern_id!r}: give text or regex (prefix is for markers)")
        if len(given) != 1:
            raise self.fail(f"{kind} {pattern_id!r}: give exactly one of text, prefix or regex")
        value = entry[given[0]]
        if not isinstance(value, str) or not value:
            raise self.fail(f"{kind} {pattern_id!r}: pattern must be a non-empty string")
        if given[0] == "text":
            return Pattern.from_text(pattern_id, value)
        if given[0] == "prefix":
            return Pattern.from_prefix(pattern_id, value)
        try:
            return Pattern.from_regex(pattern_id, value)
        except ContractError as exc:
            raise self.fail(str(exc)) from None

    def marker(self, entry: Mapping[str, Any], boot_numbers: set[int]) -> Marker:
        allowed = {
            "id",
            "text",
            "prefix",
            "regex",
            "required",
            "timeout",
            "boots",
            "same_across_boots",
            "expect",
            "max_count",
        }
        self.no_extra(entry, allowed, "marker")
        pattern = self.pattern(entry, "marker")
        where = f"marker {pattern.id!r}"
        required = entry.get("required", True)
        if not isinstance(required, bool):
            raise self.fail(f"{where}: required must be true or false")
        timeout = entry.get("timeout")
        if timeout is not None:
            timeout = self.number(timeout, f"{where} timeout")
        boots = parse_boots(entry.get("boots"), where, fail=self.fail, boot_numbers=boot_numbers)
        max_count = parse_max_count(entry.get("max_count"), where, fail=self.fail)
        groups = set(pattern.regex.groupindex)
        same = entry.get("same_across_boots", [])
        if not isinstance(same, list) or not all(isinstance(g, str) for g in same):
            raise self.fail(f"{where}: same_across_boots must be a list of group names")
        for group in same:
            if group not in groups:
                raise self.fail(f"{where}: same_across_boots names {group!r}, not a regex group")
        expect_raw = entry.get("expect", {})
        if not isinstance(expect_raw, dict):
            raise self.fail(f"{where}: expect must be a table of boot number -> {{group = value}}")
        expect: dict[int, dict[str, str]] = {}
        for key, values in expect_raw.items():
            try:
                number = int(key)
            except ValueError:
                raise self.fail(f"{where}: expect key {key!r} is not a boot number") from None
            if number not in boot_numbers:
                raise self.fail(f"{where}: expect names boot {number}, which is not defined")
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                raise self.fail(f"{where}: expect.{key} must map group names to strings")
            for group in values:
                if group not in groups:
                    raise self.fail(f"{where}: expect.{key} names {group!r}, not a regex group")
            expect[number] = dict(values)
        return Marker(pattern, required, timeout, boots, tuple(same), expect, max_count)
