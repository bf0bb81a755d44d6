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
from harness.vm.arch import profile

pytestmark = [pytest.mark.qemu, pytest.mark.network]
REPO = Path(__file__).resolve().parents[2]

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
#: What SCRIPT prints, by architecture: the guest's own interpreter and machine.
EXPECTED = {
    "aarch64": "SMOKE cpython-311 aarch64 0xe3069283 True virtio_rng.0 2048",
    "riscv64": "SMOKE cpython-313 riscv64 0xe3069283 True virtio_rng.0 2048",
}

# Imports every guest module (but no __main__) under the guest's own interpreter and stdlib:
# the static closure's check where the host's Python is another version (riscv64: 3.13).
IMPORT_ALL = """\
import os,sys
r=os.path.dirname(os.__file__)
n,b=0,[]
for d,_,fs in os.walk(r+"/guest"):
 for f in fs:
  m=(d[len(r)+1:]+"/"+f[:-3]).replace("/",".").removesuffix(".__init__")
  if f.endswith(".py") and f!="__main__.py":
   n+=1
   try:__import__(m)
   except Exception as e:b.append(f"{m}:{e!r}")
print("IMPORTS",n,b,"IMPORTS-END")
"""


def _argv(image, disk: Path, script: str) -> list[str]:
    boot = profile(image.arch)
    args = [*boot.kernel_args, "sq.mode=script", f"sq.script={script}"]
    return [
        boot.qemu_binary,
        "-M",
        boot.machine,
        *boot.firmware,
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
        f"{boot.virtio_device('blk')},drive=d0",
        "-device",
        boot.virtio_device("rng"),
    ]


def _boot_script(image, tmp_path: Path, source: str, expected: str, timeout: float) -> str:
    """Boot ``image`` with ``source`` as the guest's script; the console up to ``expected``."""
    if shutil.which(profile(image.arch).qemu_binary) is None:
        pytest.fail(f"{profile(image.arch).qemu_binary} not found: run scripts/setup-host.sh")
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * (1 << 20))
    script = base64.b64encode(source.encode()).decode()
    proc = subprocess.Popen(
        _argv(image, disk, script),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    console = bytearray()
    try:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while expected.encode() not in console and b"init: fatal" not in console:
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
    return console.decode("utf-8", "replace")


def test_guest_python_prints_what_only_it_can(qemu_settings, tmp_path: Path) -> None:
    image = ensure_image(qemu_settings.arch)
    expected = EXPECTED[image.arch]
    text = _boot_script(image, tmp_path, SCRIPT, expected, qemu_settings.scale(BOOT_TIMEOUT))
    version = expected.split()[1].removeprefix("cpython-")
    assert f"init: started (python {version[0]}.{version[1:]}" in text, text[-3000:]
    assert expected in text, text[-3000:]


def test_every_guest_module_imports_under_the_guest_python(qemu_settings, tmp_path: Path):
    image = ensure_image(qemu_settings.arch)
    text = _boot_script(
        image, tmp_path, IMPORT_ALL, "IMPORTS-END", qemu_settings.scale(BOOT_TIMEOUT)
    )
    line = next((x for x in text.splitlines() if x.startswith("IMPORTS ")), "")
    count = sum(1 for p in Path(REPO, "guest").rglob("*.py") if p.name != "__main__.py")
    assert line.strip() == f"IMPORTS {count} [] IMPORTS-END", text[-3000:]
