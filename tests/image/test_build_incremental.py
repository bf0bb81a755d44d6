"""A real build into a temporary build dir: up-to-date checks and guest-only repacks.

Uses the shared download cache (~/.cache/statefs-qemu); on a cold cache the first build
fetches the pinned packages through apt, hence the ``network`` marker.
"""

import shutil
import time
from pathlib import Path

import pytest

from harness.image.build import GUEST_DIR, ImageBuilder
from harness.image.cpio import read_entries

pytestmark = pytest.mark.network


def _mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir() if p.is_file()}


def test_guest_change_repacks_only_the_initramfs(tmp_path: Path) -> None:
    guest = tmp_path / "guest"
    shutil.copytree(GUEST_DIR, guest, ignore=shutil.ignore_patterns("__pycache__"))
    builder = ImageBuilder("aarch64", build_dir=tmp_path / "build", guest_dir=guest)
    image = builder.ensure()
    out = image.kernel.parent
    assert image.kernel.stat().st_size > 1 << 20
    segments = _mtimes(out / "segments")
    kernel_mtime = image.kernel.stat().st_mtime_ns
    manifest_mtime = image.manifest.stat().st_mtime_ns

    start = time.monotonic()
    assert builder.ensure() == image
    assert time.monotonic() - start < 1.0
    assert image.manifest.stat().st_mtime_ns == manifest_mtime  # nothing rewritten

    marker = f"CHANGED_{time.time_ns()} = True\n"
    (guest / "console.py").write_text((guest / "console.py").read_text() + marker)
    start = time.monotonic()
    builder.ensure()
    elapsed = time.monotonic() - start
    assert elapsed < 5.0, f"guest-only rebuild took {elapsed:.2f}s"
    assert _mtimes(out / "segments") == segments
    assert image.kernel.stat().st_mtime_ns == kernel_mtime
    entries = {e.name: e for e in read_entries(image.initramfs.read_bytes())}
    assert marker.encode() in entries["usr/lib/python3.11/guest/console.py"].data
    for required in (
        "init",
        "dev/console",
        "bin/busybox",
        "usr/bin/python3",
        "etc/statefs-qemu/modules",
    ):
        assert required in entries, required
