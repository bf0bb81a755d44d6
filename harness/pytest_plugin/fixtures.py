"""Fixtures: the guest image, disks, and VMs that are always stopped after the test.

``vm_factory`` is the building block: it makes :class:`~harness.vm.machine.Machine` objects from
the session's image (or a config you pass), launches them, records them for the failure report
and stops every one of them at teardown, whatever the test did. It also waits for markers
(:meth:`VmFactory.expect_markers`) and reboots on the same disk (:meth:`VmFactory.reboot`).
Artifacts of passing tests are removed unless ``--qemu-keep-artifacts=always``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from harness.artifacts import create_unique_dir, new_run_id, safe_name
from harness.contract.matcher import BootMatcher, Outcome
from harness.contract.runner import watch_boot
from harness.contract.spec import BootContract, Contract
from harness.deadline import Deadline
from harness.errors import ContractFailure
from harness.pytest_plugin.hooks import MARKER
from harness.pytest_plugin.options import QemuSettings
from harness.pytest_plugin.state import (
    MACHINES_KEY,
    REPORTS_KEY,
    SESSION_DIR_KEY,
    SETTINGS_KEY,
)
from harness.vm.config import DiskSpec, MachineConfig
from harness.vm.disks import DEFAULT_DISK_MIB, create_disk
from harness.vm.kernel_args import script_args
from harness.vm.machine import Machine, MachineState

log = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def qemu_settings(pytestconfig: pytest.Config) -> QemuSettings:
    """The effective ``--qemu-*`` settings (arch, accel, timeout multiplier, artifacts)."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def qemu_contract(qemu_settings: QemuSettings) -> Contract:
    """The project's marker contract in the session's ``--qemu-profile`` lane (its required
    and optional markers applied): ``vm_factory.expect_markers(vm, qemu_contract.for_boot(1))``."""
    return Contract.load().with_profile(qemu_settings.profile)


@pytest.fixture(scope="session")
def guest_image(qemu_settings: QemuSettings) -> Any:
    """The built guest image for ``--qemu-arch`` (built on first use, cached in build/)."""
    try:
        from harness.image import ensure_image
    except ImportError as exc:
        pytest.skip(f"the guest image builder is not available: {exc}")
    return ensure_image(qemu_settings.arch)


@pytest.fixture
def disk_factory(tmp_path: Path) -> Callable[..., Path]:
    """``disk_factory(size_mib=64, name="disk")``: a fresh sparse raw disk in the test's
    tmp_path; the same ``name`` twice returns the existing file (two boots, one disk)."""

    def make(size_mib: int = DEFAULT_DISK_MIB, name: str = "disk") -> Path:
        path = tmp_path / f"{safe_name(name)}.img"
        if path.exists():
            return path
        return create_disk(path, size_mib)

    return make


@pytest.fixture
def vm_disk(disk_factory: Callable[..., Path], request: pytest.FixtureRequest) -> Path:
    """A fresh raw disk per test (size from ``@pytest.mark.qemu(disk_size_mib=...)``)."""
    marker = request.node.get_closest_marker(MARKER)
    size = marker.kwargs.get("disk_size_mib", DEFAULT_DISK_MIB) if marker else DEFAULT_DISK_MIB
    return disk_factory(size)


class VmFactory:
    """Makes, launches and tracks the VMs of one test (see the module docstring)."""

    def __init__(
        self,
        request: pytest.FixtureRequest,
        settings: QemuSettings,
        artifacts_root: Path,
        disk: Callable[[], Path],
    ) -> None:
        self._request = request
        self.settings = settings
        self.artifacts_root = artifacts_root
        self._disk = disk
        self.machines: list[Machine] = []

    def _image(self) -> Any:
        return self._request.getfixturevalue("guest_image")

    def config(
        self,
        *,
        kernel_args: Iterable[str] = (),
        disks: Sequence[DiskSpec] | None = None,
        **overrides: Any,
    ) -> MachineConfig:
        """The image's boot profile with a disk (the test's fresh one by default), in the
        session's ``--qemu-profile`` lane (vCPUs, memory, ``-icount``; ``overrides`` win)."""
        if disks is None:
            disks = (DiskSpec(str(self._disk())),)
        return MachineConfig.from_image(
            self._image(),
            disks=disks,
            kernel_args=kernel_args,
            accel=self.settings.accel,
            **{**self.settings.machine_overrides(), **overrides},
        )

    def __call__(
        self,
        *,
        config: MachineConfig | None = None,
        kernel_args: Iterable[str] = (),
        script: str | None = None,
        disks: Sequence[DiskSpec] | None = None,
        name: str = "vm",
        launch: bool = True,
    ) -> Machine:
        """A Machine from ``config`` or from the image (+ ``kernel_args``, or ``script``: a
        Python source run as the guest's payload via ``sq.mode=script``); launched unless
        ``launch=False``."""
        if self._request.node.get_closest_marker(MARKER) is None:
            pytest.fail(
                f"{self._request.node.nodeid} boots a VM: mark it @pytest.mark.qemu", pytrace=False
            )
        if config is None:
            extra = tuple(kernel_args)
            if script is not None:
                extra = (*script_args(script, arch=self.settings.arch), *extra)
            config = self.config(kernel_args=extra, disks=disks)
        elif script is not None or tuple(kernel_args):
            config = config.with_kernel_args(
                *kernel_args, *(script_args(script, arch=config.arch) if script is not None else ())
            )
        machine = Machine(config, name=name, artifacts_root=self.artifacts_root)
        self._track(machine)
        if launch:
            machine.launch()
        return machine

    def _track(self, machine: Machine) -> None:
        self.machines.append(machine)
        self._request.node.stash.setdefault(MACHINES_KEY, []).append(machine)

    def timeout(self, seconds: float) -> Deadline:
        """A deadline of ``seconds`` scaled by ``--qemu-timeout-multiplier``."""
        return Deadline(
            self.settings.scale(seconds), label=f"{seconds:g} s x {self.settings.timeout_scale:g}"
        )

    def expect_markers(
        self,
        machine: Machine,
        markers: BootContract | Iterable[str | re.Pattern[str]],
        *,
        timeout: float = 60.0,
        until: Literal["markers", "poweroff"] = "markers",
    ) -> BootMatcher:
        """Watch ``machine``'s console until every marker arrived (order-tolerant, failure
        patterns short-circuit); raise :class:`ContractFailure` with the report otherwise."""
        contract = (
            markers
            if isinstance(markers, BootContract)
            else BootContract.of(markers, timeout=timeout)
        )
        matcher = BootMatcher(contract, multiplier=self.settings.timeout_scale)
        deadline = self.timeout(timeout)
        watch_boot(machine, matcher, deadline, until=until)
        if matcher.outcome is Outcome.PASSED and until == "poweroff":
            machine.wait(Deadline(10.0, label="exit after power-off"))
        if matcher.outcome is not Outcome.PASSED:
            raise ContractFailure(
                f"{machine.name}: {matcher.outcome.value}: {matcher.reason}",
                report=matcher.report(),
            )
        return matcher

    def reboot(
        self,
        machine: Machine,
        *,
        kernel_args: Iterable[str] | None = None,
        timeout: float = 60.0,
        name: str | None = None,
    ) -> Machine:
        """Let ``machine`` finish (guest power-off, or stop it after ``timeout``) and boot a
        new QEMU process on the same disks; ``kernel_args`` replace the image's extras."""
        if machine.state is MachineState.RUNNING:
            try:
                machine.wait(self.timeout(timeout))
            finally:
                machine.shutdown()
        changes: dict[str, Any] = {}
        if kernel_args is not None:
            base = self.config(disks=machine.config.disks).kernel_args
            changes["kernel_args"] = (*base, *kernel_args)
        successor = machine.next_boot(name=name or machine.name, **changes)
        self._track(successor)
        successor.launch()
        return successor

    def close(self) -> None:
        for machine in self.machines:
            try:
                machine.shutdown(quit_timeout=2.0, term_timeout=2.0)
            except Exception:
                log.exception("stopping %s failed", machine.name)


def _session_dir(request: pytest.FixtureRequest, settings: QemuSettings) -> Path:
    """This session's (this xdist worker's) directory under the artifacts dir, made once.

    With no artifacts directory configured it is pytest's own temporary directory
    (``tmp_path_factory``: ``<basetemp>/qemu-runs0``), never a path under the rootdir.
    """
    config = request.config
    directory = config.stash.get(SESSION_DIR_KEY, None)
    if directory is None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        if settings.artifacts_dir is None:
            factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
            directory = factory.mktemp("qemu-runs")
        else:
            directory = create_unique_dir(settings.artifacts_dir, f"{new_run_id()}-{worker}")
        config.stash[SESSION_DIR_KEY] = directory
    return directory


@pytest.fixture
def vm_factory(
    request: pytest.FixtureRequest, qemu_settings: QemuSettings, disk_factory: Callable[..., Path]
) -> Iterator[VmFactory]:
    """Make VMs for this test; every one is stopped at teardown (see :class:`VmFactory`)."""
    marker = request.node.get_closest_marker(MARKER)
    size = marker.kwargs.get("disk_size_mib", DEFAULT_DISK_MIB) if marker else DEFAULT_DISK_MIB
    test_dir = create_unique_dir(_session_dir(request, qemu_settings), safe_name(request.node.name))
    factory = VmFactory(request, qemu_settings, test_dir, lambda: disk_factory(size))
    try:
        yield factory
    finally:
        factory.close()
        reports = request.node.stash.get(REPORTS_KEY, {})
        call = reports.get("call")
        failed = call is None or any(report.failed for report in reports.values())
        keep = qemu_settings.keep == "always" or (qemu_settings.keep == "failed" and failed)
        if not keep:
            shutil.rmtree(test_dir, ignore_errors=True)


@pytest.fixture
def vm(vm_factory: VmFactory, request: pytest.FixtureRequest, qemu_contract: Contract) -> Machine:
    """A launched VM of the session's image on a fresh disk, with the kernel arguments of
    ``@pytest.mark.qemu(kernel_args=[...])``.

    Without them it boots boot 1 of the project's contract: ``sq.mode=contract sq.boot=1
    sq.nonce=<fresh>`` (:meth:`Contract.kernel_args`), what contract mode needs; the guest
    refuses to start without a nonce.
    """
    marker = request.node.get_closest_marker(MARKER)
    kernel_args = tuple(marker.kwargs.get("kernel_args", ())) if marker else ()
    return vm_factory(kernel_args=kernel_args or qemu_contract.kernel_args(1))
