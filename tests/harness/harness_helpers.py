"""Helpers shared by the harness tests (imported by name: tests/harness is on sys.path)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TRANSCRIPTS = HERE / "transcripts"

requires_qemu_binary = pytest.mark.skipif(
    shutil.which("qemu-system-aarch64") is None, reason="qemu-system-aarch64 is not installed"
)


def pid_gone(pid: int, *, within: float = 0.0) -> bool:
    """True if no process ``pid`` exists (waiting up to ``within`` seconds for it to go).

    A zombie still answers ``kill(pid, 0)``; the harness reaps what it starts, so a zombie here
    would be a bug too.
    """
    end = time.monotonic() + within
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)


def transcript(name: str) -> str:
    return (TRANSCRIPTS / name).read_text(encoding="utf-8")


def make_image_dir(directory: Path, *, arch: str = "aarch64") -> Path:
    """A built-image directory (vmlinuz, initramfs.cpio, manifest): what ``--image-dir`` and
    ``load_image`` take. Which QEMU boots it is the arch profile's (see ``fake_profile``)."""
    import hashlib

    from harness.image import manifest

    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, data in ((manifest.KERNEL_NAME, b"fake kernel"), (manifest.INITRAMFS_NAME, b"fake")):
        (directory / name).write_bytes(data)
        files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest.write(directory / manifest.MANIFEST_NAME, {"arch": arch, "files": files})
    return directory


def fake_profile(monkeypatch: pytest.MonkeyPatch, qemu_binary: str, arch: str = "aarch64") -> None:
    """Boot ``arch`` guests with ``qemu_binary`` (the fake QEMU) for this test."""
    import dataclasses

    from harness.vm.arch import ARCH_PROFILES

    profile = dataclasses.replace(ARCH_PROFILES[arch], qemu_binary=qemu_binary)
    monkeypatch.setitem(ARCH_PROFILES, arch, profile)
