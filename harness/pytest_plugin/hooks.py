"""Hooks: the ``qemu`` marker, the report header, and evidence on failing reports.

When a test that booted VMs fails (in setup, call or teardown), its report gets, per VM, a
section with the console's last lines and one with the artifact directory, QEMU's exit and the
tail of its stderr; the artifact path also goes into the item's ``user_properties`` so JUnit
XML (``--junitxml``) carries it as a ``<property>``. Sections are added while the phase's report is
built, so they show in the terminal summary and in ``rep.sections``.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from harness.errors import HarnessError
from harness.pytest_plugin.options import resolve
from harness.pytest_plugin.state import MACHINES_KEY, REPORTS_KEY, SETTINGS_KEY
from harness.vm.accel import choose_accel

MARKER = "qemu"
MARKER_KWARGS = frozenset({"disk_size_mib", "kernel_args"})
MARKER_HELP = (
    "qemu(disk_size_mib=64, kernel_args=()): the test boots a QEMU VM; the vm fixture uses "
    "the kwargs. Deselect with -m 'not qemu'."
)
CONSOLE_LINES = 40


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.stash[SETTINGS_KEY] = resolve(config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[SETTINGS_KEY]
    try:
        accel = choose_accel(settings.arch, settings.accel)
        accel_text = f"{accel.name} ({accel.reason})"
    except HarnessError as exc:
        accel_text = str(exc)
    return [f"statefs-qemu: {settings.describe()}", f"statefs-qemu: accelerator {accel_text}"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for marker in item.iter_markers(MARKER):
            unknown = set(marker.kwargs) - MARKER_KWARGS
            if marker.args or unknown:
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.qemu takes only keyword arguments "
                    f"{sorted(MARKER_KWARGS)}; got args={marker.args!r}, "
                    f"unknown={sorted(unknown)}"
                )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(REPORTS_KEY, {})[report.when] = report
    machines = item.stash.get(MACHINES_KEY, [])
    if report.failed and machines:
        for machine in machines:
            console = machine.console_tail(CONSOLE_LINES)
            report.sections.append(
                (
                    f"qemu {machine.name} console (last {CONSOLE_LINES} lines)",
                    console or "(nothing printed)",
                )
            )
            evidence = [
                f"artifacts: {machine.artifacts.path}",
                f"uart.log: {machine.artifacts.uart_log}",
                f"state: {machine.status()}",
            ]
            if machine.exit_info is not None:
                evidence.append(machine.exit_info.describe())
            stderr = machine.stderr_text(2000).strip()
            if stderr:
                evidence.append("qemu stderr (tail):")
                evidence.extend(f"  {line}" for line in stderr.splitlines()[-15:])
            report.sections.append((f"qemu {machine.name} artifacts", "\n".join(evidence)))
            # JUnit XML writes the properties of the teardown report, built from the item's.
            prop = (f"qemu_artifacts_{machine.name}", str(machine.artifacts.path))
            if prop not in item.user_properties:
                item.user_properties.append(prop)
    return report
