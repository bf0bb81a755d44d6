"""Phases: ordered groups of markers, so a report says *how far* a boot got.

A flat list of twelve markers says which ones are missing; phases say which stage of the boot
broke first (the kernel and init, the services, the store proofs...), which is what a person
debugging a red CI run asks first. They also give a natural stopping point:
``--until-phase NAME`` (``RUN_PHASE=NAME``) runs the boots up to the first one that has a
marker of that phase and stops that boot as soon as every phase up to it is complete.

Phases order the report; they do not constrain arrival order (the guest's services print
concurrently). When a contract declares phases, every required marker belongs to exactly one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import ContractError


@dataclass(frozen=True)
class Phase:
    """One named group of marker ids, in contract order."""

    name: str
    markers: tuple[str, ...]
    description: str = ""


def parse_phases(
    data: Mapping[str, Any],
    *,
    fail: Callable[[str], ContractError],
    markers: Sequence[Any],
) -> tuple[Phase, ...]:
    """The ``[[phase]]`` entries, validated against the contract's markers."""
    entries = data.get("phase", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise fail("phase must be an array of tables ([[phase]])")
    by_id = {m.id: m for m in markers}
    owner: dict[str, str] = {}
    phases: list[Phase] = []
    for entry in entries:
        extra = set(entry) - {"name", "markers", "description"}
        if extra:
            raise fail(f"phase {entry.get('name', '?')!r}: unknown keys {sorted(extra)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise fail(f"every phase needs a name (got {dict(entry)!r})")
        if any(p.name == name for p in phases):
            raise fail(f"duplicate phase name {name!r}")
        ids = entry.get("markers")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise fail(f"phase {name!r}: markers must be a non-empty list of marker ids")
        for marker_id in ids:
            if marker_id not in by_id:
                raise fail(f"phase {name!r}: no marker {marker_id!r}")
            if marker_id in owner:
                raise fail(
                    f"phase {name!r}: marker {marker_id!r} is already in {owner[marker_id]!r}"
                )
            owner[marker_id] = name
        description = entry.get("description", "")
        if not isinstance(description, str):
            raise fail(f"phase {name!r}: description must be a string")
        phases.append(Phase(name, tuple(ids), description))
    if phases:
        check_coverage(phases, markers, fail=fail)
    return tuple(phases)


def check_coverage(
    phases: Sequence[Phase], markers: Sequence[Any], *, fail: Callable[[str], ContractError]
) -> None:
    """Every required marker is in a phase (else the report could not place it)."""
    phased = {marker_id for phase in phases for marker_id in phase.markers}
    loose = [m.id for m in markers if m.required and m.id not in phased]
    if loose:
        raise fail(f"required markers in no phase: {loose}")


def phase_of(phases: Sequence[Phase], marker_id: str) -> Phase | None:
    for phase in phases:
        if marker_id in phase.markers:
            return phase
    return None


def boot_phases(phases: Sequence[Phase], boot: Any) -> list[tuple[Phase, list[Any]]]:
    """``(phase, its markers in this boot)`` for each phase that has markers in ``boot``."""
    by_id = {m.id: m for m in boot.markers}
    found = []
    for phase in phases:
        members = [by_id[i] for i in phase.markers if i in by_id]
        if members:
            found.append((phase, members))
    return found


def first_failed_phase(boot: Any, arrivals: Mapping[str, Any], failure: Any | None) -> Phase | None:
    """The first phase of ``boot`` (a BootContract) that did not complete.

    A failure line that belongs to a marker (a capture mismatch, ``max_count``) fails that
    marker's phase; any other failure line fails the first phase not complete when it came.
    Otherwise the first phase with a required marker missing; ``None`` if every phase
    completed.
    """
    phases = boot_phases(boot.phases, boot)
    if failure is not None:
        own = phase_of(boot.phases, failure.pattern_id)
        if own is not None:
            return own
    for phase, members in phases:
        for marker in members:
            if not marker.required:
                continue
            arrival = arrivals.get(marker.id)
            if arrival is None or (failure is not None and arrival.line_no > failure.line_no):
                return phase
    return None


def phase_summary(boot: Any, arrivals: Mapping[str, Any], failure: Any | None) -> str:
    """The report's phase line: which phase failed first and which completed, or ""."""
    phases = boot_phases(boot.phases, boot)
    if not phases:
        return ""
    failed = first_failed_phase(boot, arrivals, failure)
    if failed is None:
        return "phases: all complete (" + ", ".join(p.name for p, _ in phases) + ")"
    done = []
    for phase, _members in phases:
        if phase.name == failed.name:
            break
        done.append(phase.name)
    return f"phase {failed.name!r} failed first (complete: {', '.join(done) or 'none'})"


# -- --until-phase ---------------------------------------------------------------------------
def boots_until_phase(contract: Any, name: str, boots: Sequence[int]) -> tuple[int, ...]:
    """``boots`` up to and including the first that has a required marker of phase ``name``."""
    phase = phase_named(contract.phases, name)
    for index, number in enumerate(boots):
        boot = contract.for_boot(number)
        if any(m.required and m.id in phase.markers for m in boot.markers):
            return tuple(boots[: index + 1])
    raise ContractError(f"phase {name!r} has no required marker in boots {list(boots)}")


def until_phase(boot: Any, name: str) -> Any:
    """``boot`` (a BootContract) whose markers of the phases after ``name`` are optional, so
    it passes as soon as every phase up to ``name`` is complete."""
    order = [p.name for p in boot.phases]
    phase_named(boot.phases, name)
    later = {i for p in boot.phases[order.index(name) + 1 :] for i in p.markers}
    markers = tuple(
        dataclasses.replace(m, required=False) if m.id in later else m for m in boot.markers
    )
    return dataclasses.replace(boot, markers=markers)


def phase_named(phases: Sequence[Phase], name: str) -> Phase:
    for phase in phases:
        if phase.name == name:
            return phase
    known = ", ".join(p.name for p in phases) or "none: the contract declares no [[phase]]"
    raise ContractError(f"no phase {name!r} (phases: {known})")
