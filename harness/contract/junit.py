"""JUnit XML per marker: one ``<testsuite>`` per boot, one ``<testcase>`` per contract marker.

CI systems (GitLab, Jenkins) render JUnit files as a test list; a contract run written as one
pass/fail line would show "qemu-test failed" and nothing more. Here each marker is a test case,
so the CI page names the marker that failed and carries the report text:

* ``time`` of a case is the marker's arrival in seconds since QEMU was launched (no ``time``
  when it never arrived), ``time`` of a suite the boot's length;
* a required marker that did not arrive is a ``<failure type="missing">``, a marker whose own
  line failed the boot (a capture mismatch, ``max_count``) a failure of that type; the text is
  what the report says: what is missing, the failure line, the phase, the console excerpt;
* an optional marker that did not arrive is ``<skipped>``; so is every case of a boot that was
  not run because an earlier one failed;
* each forbidden line and strict namespace of the boot is a case too, and ``boot-outcome``
  carries what no marker can (the guest did not power off, QEMU died, the deadline passed).

The XML is written with the standard library; the tests read it back with ``junitparser``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.atomic import write_bytes
from harness.contract.matcher import BootMatcher, Outcome
from harness.contract.phases import phase_summary
from harness.contract.spec import BootContract, Contract

OUTCOME_CASE = "boot-outcome"


@dataclass(frozen=True)
class JunitBoot:
    """One boot's verdict as the JUnit file shows it."""

    number: int
    matcher: BootMatcher
    duration: float | None = None  # launch to QEMU's exit, seconds
    note: str = ""  # e.g. QEMU's exit, appended to the outcome case's text


@dataclass
class _Suite:
    element: ET.Element
    counts: dict[str, int] = field(
        default_factory=lambda: {"tests": 0, "failures": 0, "skipped": 0}
    )

    def case(self, name: str, classname: str, time: float | None = None) -> ET.Element:
        self.counts["tests"] += 1
        attrs = {"name": name, "classname": classname}
        if time is not None:
            attrs["time"] = f"{time:.3f}"
        return ET.SubElement(self.element, "testcase", attrs)

    def fail(self, case: ET.Element, kind: str, message: str, text: str) -> None:
        self.counts["failures"] += 1
        ET.SubElement(case, "failure", {"type": kind, "message": message}).text = text

    def skip(self, case: ET.Element, message: str) -> None:
        self.counts["skipped"] += 1
        ET.SubElement(case, "skipped", {"message": message})

    def close(self, time: float | None) -> None:
        for key, value in self.counts.items():
            self.element.set(key, str(value))
        self.element.set("errors", "0")
        self.element.set("time", f"{time or 0.0:.3f}")


def _properties(parent: ET.Element, values: Mapping[str, object]) -> None:
    props = ET.SubElement(parent, "properties")
    for key, value in values.items():
        if value is not None and value != "":
            ET.SubElement(props, "property", {"name": key, "value": str(value)})


def _boot_suite(root: ET.Element, boot: JunitBoot, run: str, extra: Mapping[str, object]) -> _Suite:
    m = boot.matcher
    contract = m.contract
    classname = f"{run}.boot{boot.number}"
    duration = boot.duration
    if duration is None:  # a replayed boot: up to its last timed console line
        duration = max((at for at, _ in m.lines if at is not None), default=None)
    element = ET.SubElement(root, "testsuite", {"name": f"boot{boot.number}"})
    phase = phase_summary(contract, m.arrivals, m.failure)
    _properties(
        element,
        {
            "outcome": m.outcome.value,
            "reason": m.reason,
            "phase": phase,
            "qemu": boot.note,
            **extra,
        },
    )
    suite = _Suite(element)
    report = m.report(header=f"boot {boot.number}: {m.outcome.value.upper()}")
    failure = m.failure
    for marker in contract.markers:
        arrival = m.arrivals.get(marker.id)
        case = suite.case(marker.id, classname, None if arrival is None else arrival.at)
        if failure is not None and failure.pattern_id == marker.id:
            kind = "count" if "max_count" in failure.reason else "capture"
            suite.fail(case, kind, failure.reason, f"{failure.reason}\n\n{report}")
        elif arrival is None and marker.required:
            message = f"missing: {marker.pattern.display}"
            suite.fail(case, "missing", message, f"{message}\n\n{report}")
        elif arrival is None:
            suite.skip(case, "optional marker, not printed")
        else:
            ET.SubElement(case, "system-out").text = arrival.line
    for entry in contract.policy.forbidden:
        case = suite.case(f"forbidden:{entry.id}", classname)
        if failure is not None and failure.pattern_id == entry.id:
            suite.fail(case, "forbidden", failure.reason, f"{failure.reason}\n\n{report}")
    for namespace in contract.policy.strict_namespaces:
        case = suite.case(f"strict:{namespace.strip()}", classname)
        if failure is not None and failure.pattern_id == f"unknown:{namespace.strip()}":
            suite.fail(case, "unknown-line", failure.reason, f"{failure.reason}\n\n{report}")
    case = suite.case(OUTCOME_CASE, classname, duration)
    if m.outcome is not Outcome.PASSED:
        text = report + (f"\n  qemu: {boot.note}" if boot.note else "")
        suite.fail(case, m.outcome.value, f"{m.outcome.value.upper()}: {m.reason}", text)
    suite.close(duration)
    return suite


def _skipped_suite(
    root: ET.Element, boot: BootContract, run: str, why: str, extra: Mapping[str, object]
) -> _Suite:
    element = ET.SubElement(root, "testsuite", {"name": f"boot{boot.number}"})
    _properties(element, {"outcome": "not run", "reason": why, **extra})
    suite = _Suite(element)
    for marker in boot.markers:
        suite.skip(suite.case(marker.id, f"{run}.boot{boot.number}"), why)
    suite.skip(suite.case(OUTCOME_CASE, f"{run}.boot{boot.number}"), why)
    suite.close(None)
    return suite


def junit_xml(
    boots: Sequence[JunitBoot],
    contract: Contract,
    *,
    expected_boots: Sequence[int] = (),
    run: str = "marker-contract",
    properties: Mapping[str, object] | None = None,
) -> str:
    """The JUnit document of a run: ``boots`` as run, then the ``expected_boots`` not run."""
    extra = dict(properties or {})
    root = ET.Element("testsuites", {"name": run})
    suites = [_boot_suite(root, boot, run, extra) for boot in boots]
    done = {boot.number for boot in boots}
    failed = next((b.number for b in boots if b.matcher.outcome is not Outcome.PASSED), None)
    for number in expected_boots:
        if number not in done:
            why = f"not run: boot {failed} did not pass" if failed else "not run"
            suites.append(_skipped_suite(root, contract.for_boot(number), run, why, extra))
    for key in ("tests", "failures", "skipped"):
        root.set(key, str(sum(s.counts[key] for s in suites)))
    root.set("errors", "0")
    root.set("time", f"{sum(float(s.element.get('time', 0)) for s in suites):.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(
    path: Path,
    boots: Sequence[JunitBoot],
    contract: Contract,
    *,
    expected_boots: Sequence[int] = (),
    run: str = "marker-contract",
    properties: Mapping[str, object] | None = None,
) -> Path:
    """Write :func:`junit_xml` to ``path`` atomically (a CI job never reads half a file)."""
    text = junit_xml(boots, contract, expected_boots=expected_boots, run=run, properties=properties)
    return write_bytes(path, text.encode("utf-8"))
