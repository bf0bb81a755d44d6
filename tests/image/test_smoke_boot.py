"""Smoke test: build (or reuse) the image, boot it in QEMU, and see a line only the guest's
Python can print.

Independent of the rest of the harness on purpose: a plain Popen, a deadline, and a kill in
``finally`` so no QEMU outlives the test.
"""

import base64
import os
import selectors
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.image import ensure_image

pytestmark = [pytest.mark.qemu, pytest.mark.network]

BOOT_TIMEOUT = 90.0

# Runs inside the guest (sq.mode=script). Uses only modules every image has, plus crcmod's C
# extension, which must be the one doing the work.
SCRIPT = """\
import os, sys
import crcmod._crcfunext
import crcmod.predefined
crc = crcmod.predefined.mkCrcFun("crc-32c")(b"123456789")
with open("/sys/devices/virtual/misc/hw_random/rng_current") as f:
    rng = f.read().strip()
with open("/sys/block/vda/size") as f:
    sectors = f.read().strip()
using_extension = sys.modules["crcmod.crcmod"]._usingExtension
print("SMOKE", sys.implementation.cache_tag, os.uname().machine, hex(crc), using_extension,
      rng, sectors, flush=True)
"""
EXPECTED = "SMOKE cpython-311 aarch64 0xe3069283 True virtio_rng.0 2048"


def _argv(image, disk: Path, script: str) -> list[str]:
    boot = image.boot
    args = [*boot.kernel_args, "sq.mode=script", f"sq.script={script}"]
    return [
        boot.qemu_binary,
        "-M",
        boot.machine,
        "-cpu",
        boot.cpu,
        "-smp",
        "1",
        "-m",
        "512",
        "-nic",
        "none",
        "-no-reboot",
        "-nographic",
        "-monitor",
        "none",
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initramfs),
        "-append",
        " ".join(args),
        "-drive",
        f"if=none,format=raw,id=d0,file={disk}",
        "-device",
        f"virtio-blk-{boot.virtio_suffix},drive=d0",
        "-device",
        f"virtio-rng-{boot.virtio_suffix}",
    ]


def test_guest_python_prints_what_only_it_can(tmp_path: Path) -> None:
    image = ensure_image("aarch64")
    if shutil.which(image.boot.qemu_binary) is None:
        pytest.fail(f"{image.boot.qemu_binary} not found: run scripts/setup-host.sh")
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * (1 << 20))
    script = base64.b64encode(SCRIPT.encode()).decode()
    proc = subprocess.Popen(
        _argv(image, disk, script),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    console = bytearray()
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while EXPECTED.encode() not in console and b"init: fatal" not in console:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if sel.select(timeout=min(remaining, 1.0)):
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    console += chunk
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    text = console.decode("utf-8", "replace")
    assert "init: started (python 3.11" in text, text[-3000:]
    assert EXPECTED in text, text[-3000:]
