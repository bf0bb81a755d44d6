"""Shared fixtures of the harness tests: a fake QEMU, configs that use it, the real image."""

from __future__ import annotations

import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.vm.config import DiskSpec, MachineConfig

HERE = Path(__file__).resolve().parent
TRANSCRIPTS = HERE / "transcripts"
FAKE_QEMU_SOURCE = HERE / "fake_qemu.py"


@pytest.fixture(scope="session")
def fake_qemu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An executable that looks like qemu-system-aarch64 to the harness (see fake_qemu.py)."""
    path = tmp_path_factory.mktemp("fake-qemu") / "qemu-system-fake"
    path.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_QEMU_SOURCE} "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


FakeConfig = Callable[..., MachineConfig]


@pytest.fixture
def fake_config(fake_qemu: Path, tmp_path: Path) -> FakeConfig:
    """``fake_config(mode, console=..., disk=True, **env)``: a MachineConfig running the fake."""

    def make(
        mode: str = "normal",
        *,
        console: str = "",
        disk: bool = False,
        kernel_args: tuple[str, ...] = (),
        **env: str,
    ) -> MachineConfig:
        disks: tuple[DiskSpec, ...] = ()
        kernel = None
        if disk:
            image = tmp_path / "disk.img"
            if not image.exists():
                image.write_bytes(b"\0" * 4096)
            disks = (DiskSpec(str(image)),)
        if kernel_args:
            kernel = tmp_path / "vmlinuz"
            kernel.write_bytes(b"fake kernel")
        variables = {"FAKE_QEMU_MODE": mode, "FAKE_QEMU_CONSOLE": console}
        variables.update({f"FAKE_QEMU_{k.upper()}": v for k, v in env.items()})
        return MachineConfig(
            qemu_binary=str(fake_qemu),
            accel="tcg",
            kernel=kernel,
            kernel_args=kernel_args,
            disks=disks,
            env=tuple(variables.items()),
        )

    return make


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path
