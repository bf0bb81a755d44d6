"""Profiles: named lanes of the contract (``--profile NAME``), each a QEMU setting and a
choice of required markers.

CI runs the same contract in several lanes: the default machine, two vCPUs (races between the
guest's services), and ``-icount`` (a deterministic instruction clock, the lane a flaky timing
bug is reproduced in). A lane is data in ``contract.toml``::

    [profile.smp2]
    extends = "default"
    smp = 2

A profile may set ``smp``, ``memory_mib``, ``icount`` (QEMU's ``-icount`` value; it implies
TCG), ``record`` (QEMU record/replay of every boot, :mod:`harness.vm.recording`; TCG too),
``timeout_multiplier``, and lists of marker ids it makes ``require``\\ d or ``optional``.
``extends`` inherits another profile's settings (the child's win; the lists add up).

A caller setting (a command-line flag or ``$QEMU_TIMEOUT_MULTIPLIER``) that differs from what
the chosen profile sets is an error naming both, never silently overridden: a lane is what CI
says it ran. Settings the profile leaves open take the caller's value.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.deadline import parse_multiplier
from harness.errors import ConfigError, ContractError

DEFAULT_PROFILE = "default"
SETTINGS = ("smp", "memory_mib", "icount", "timeout_multiplier", "record")
_KEYS = {"extends", "description", "require", "optional", *SETTINGS}


@dataclass(frozen=True)
class Settings:
    """QEMU settings of a run; ``None``: not set (by this profile, or by the caller)."""

    smp: int | None = None
    memory_mib: int | None = None
    icount: str | None = None
    timeout_multiplier: float | None = None
    record: bool | None = None

    def merged_over(self, base: Settings) -> Settings:
        """These settings, with ``base`` filling what they leave open."""
        return Settings(**{k: _first(getattr(self, k), getattr(base, k)) for k in SETTINGS})


def _first(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


@dataclass(frozen=True)
class Profile:
    """One resolved lane (``extends`` already applied)."""

    name: str
    settings: Settings = Settings()
    require: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    description: str = ""
    chain: tuple[str, ...] = ()  # this profile, then what it extends

    def resolve(self, caller: Settings, *, accel: str = "auto") -> Settings:
        """The run's settings: the profile's, then the caller's where the profile is silent.

        Raises :class:`ConfigError` when the caller set a value the profile contradicts,
        and when ``icount`` meets ``--accel kvm`` (QEMU's instruction counter is TCG only).
        """
        for key in SETTINGS:
            mine, theirs = getattr(self.settings, key), getattr(caller, key)
            if mine is not None and theirs is not None and mine != theirs:
                raise ConfigError(
                    f"{_flag(key)} {theirs} contradicts profile {self.name!r}, which sets "
                    f"{key} = {mine!r}: drop the setting or choose another profile"
                )
        settings = self.settings.merged_over(caller)
        if settings.record and accel == "kvm":
            raise ConfigError(
                "recording every boot (--record or the profile) needs TCG; --accel kvm "
                "contradicts it"
            )
        if settings.icount is not None and accel == "kvm":
            raise ConfigError(
                f"profile {self.name!r}: -icount {settings.icount} needs TCG; --accel kvm "
                "contradicts it"
            )
        return settings

    def apply(self, markers: Sequence[Any]) -> tuple[Any, ...]:
        """``markers`` with this profile's ``require``/``optional`` choices applied."""
        out = []
        for marker in markers:
            if marker.id in self.require:
                marker = dataclasses.replace(marker, required=True)
            elif marker.id in self.optional:
                marker = dataclasses.replace(marker, required=False)
            out.append(marker)
        return tuple(out)


def _flag(key: str) -> str:
    return {
        "smp": "--smp",
        "memory_mib": "--memory-mib",
        "icount": "--icount",
        "timeout_multiplier": "the timeout multiplier",
        "record": "--record",
    }[key]


def recorded_profile(path: Path) -> str | None:
    """The profile a past run was judged under (its ``run.json``), so a replay applies the
    same required markers as the live run did; ``None`` if nothing says."""
    directory = path.parent if path.is_file() else path
    for candidate in (directory, directory.parent):
        summary = candidate / "run.json"
        if summary.is_file():
            try:
                name = json.loads(summary.read_text(encoding="utf-8")).get("profile")
            except (OSError, ValueError):
                return None
            return name if isinstance(name, str) else None
    return None


# -- parsing ---------------------------------------------------------------------------------
def parse_profiles(
    data: Mapping[str, Any], *, fail: Callable[[str], ContractError], marker_ids: set[str]
) -> dict[str, Profile]:
    """The ``[profile.NAME]`` tables, resolved through ``extends`` (cycles are errors)."""
    raw = data.get("profile", {})
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise fail("profile must be tables of settings ([profile.NAME])")
    own = {name: _parse_one(name, table, fail, marker_ids) for name, table in raw.items()}
    resolved: dict[str, Profile] = {}
    for name in own:
        resolved[name] = _resolve(name, own, raw, fail, ())
    return resolved


def _parse_one(
    name: str, table: Mapping[str, Any], fail: Callable[[str], ContractError], ids: set[str]
) -> Profile:
    where = f"profile {name!r}"
    extra = set(table) - _KEYS
    if extra:
        raise fail(f"{where}: unknown keys {sorted(extra)} (allowed: {sorted(_KEYS)})")
    smp = _int(table.get("smp"), f"{where} smp", 1, 64, fail)
    memory = _int(table.get("memory_mib"), f"{where} memory_mib", 16, 65536, fail)
    icount = table.get("icount")
    if icount is not None and (not isinstance(icount, str) or not icount or " " in icount):
        raise fail(f"{where}: icount must be a QEMU -icount value such as 'shift=auto'")
    multiplier = table.get("timeout_multiplier")
    if multiplier is not None:
        if isinstance(multiplier, bool) or not isinstance(multiplier, int | float):
            raise fail(f"{where}: timeout_multiplier must be a number, got {multiplier!r}")
        try:
            parse_multiplier(multiplier)  # the one bound every multiplier has
        except ConfigError as exc:
            raise fail(f"{where}: {exc}") from None
    record = table.get("record")
    if record is not None and not isinstance(record, bool):
        raise fail(f"{where}: record must be true or false, got {record!r}")
    lists = {}
    for key in ("require", "optional"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
            raise fail(f"{where}: {key} must be a list of marker ids")
        unknown = sorted(set(value) - ids)
        if unknown:
            raise fail(f"{where}: {key} names no marker {unknown}")
        lists[key] = tuple(value)
    both = sorted(set(lists["require"]) & set(lists["optional"]))
    if both:
        raise fail(f"{where}: {both} both required and optional")
    description = table.get("description", "")
    if not isinstance(description, str):
        raise fail(f"{where}: description must be a string")
    settings = Settings(
        smp, memory, icount, None if multiplier is None else float(multiplier), record
    )
    return Profile(name, settings, lists["require"], lists["optional"], description, (name,))


def _int(
    value: Any, where: str, low: int, high: int, fail: Callable[[str], ContractError]
) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise fail(f"{where} must be an integer in {low}..{high}, got {value!r}")
    return value


def _resolve(
    name: str,
    own: Mapping[str, Profile],
    raw: Mapping[str, Mapping[str, Any]],
    fail: Callable[[str], ContractError],
    seen: tuple[str, ...],
) -> Profile:
    if name in seen:
        raise fail(f"profile {seen[0]!r}: extends forms a cycle: {' -> '.join((*seen, name))}")
    profile = own[name]
    parent_name = raw[name].get("extends")
    if parent_name is None:
        return profile
    if not isinstance(parent_name, str) or parent_name not in own:
        raise fail(f"profile {name!r}: extends {parent_name!r}, which is not a profile")
    parent = _resolve(parent_name, own, raw, fail, (*seen, name))
    require = tuple(i for i in parent.require if i not in profile.optional) + profile.require
    optional = tuple(i for i in parent.optional if i not in profile.require) + profile.optional
    return Profile(
        name,
        profile.settings.merged_over(parent.settings),
        tuple(dict.fromkeys(require)),
        tuple(dict.fromkeys(optional)),
        profile.description or parent.description,
        (name, *parent.chain),
    )
