"""The ``gdb-multiarch`` command that attaches to a replay, and where the kernel's symbols are.

QEMU's gdb stub (``-gdb tcp:127.0.0.1:PORT`` with ``-S``) holds the replay at its first
instruction until gdb continues it; under replay every run to a breakpoint is the recorded one.

The kernel QEMU boots (``-kernel``) is Debian's stripped ``Image``: it has no symbols. Debian
ships them separately in ``linux-image-<release>-dbg``, which installs
``/usr/lib/debug/boot/vmlinux-<release>``; the guest image does not include that package (it is
several hundred MiB). When the file is on this host the command loads it; otherwise it
attaches without symbols and says how to get them. A recorded boot runs with ``nokaslr`` so the
symbols sit at their link addresses. (The kernel package's own ``System.map`` is a one-line
stub pointing at the ``-dbg`` package too, so there is no symbol table short of it.)
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Protocol

DEFAULT_GDB_PORT = 1234
DEBUG_VMLINUX = "/usr/lib/debug/boot/vmlinux-{release}"
GDB_ARCH = {"aarch64": "aarch64", "x86_64": "i386:x86-64"}
DEBIAN_ARCH = {"aarch64": "arm64", "x86_64": "amd64"}

_LINUX_VERSION = re.compile(rb"Linux version (\S+) \(")


class _Boot(Protocol):
    @property
    def record(self) -> dict[str, Any]: ...
    @property
    def entry(self) -> dict[str, Any]: ...

    def path(self, ref: dict[str, Any] | str) -> Path: ...


def kernel_release(kernel: Path) -> str | None:
    """The ``uname -r`` of a kernel image, from its ``Linux version`` banner (None if the
    image is compressed or has none)."""
    pattern_tail = b""
    with open(kernel, "rb") as handle:
        while chunk := handle.read(1 << 20):
            match = _LINUX_VERSION.search(pattern_tail + chunk)
            if match:
                return match.group(1).decode("ascii", "replace")
            pattern_tail = chunk[-256:]
    return None


def debug_vmlinux(release: str, root: Path = Path("/")) -> Path | None:
    """The vmlinux with debug symbols that Debian's ``-dbg`` package installs, if present."""
    path = root / DEBUG_VMLINUX.format(release=release).lstrip("/")
    return path if path.is_file() else None


def gdb_command(boot: _Boot, port: int) -> list[str]:
    """Lines to print: the attach command, and the truth about the symbols."""
    arch = boot.entry["config"]["arch"]
    kernel = boot.path(boot.record["kernel"])
    release = kernel_release(kernel)
    vmlinux = debug_vmlinux(release) if release else None
    parts = ["gdb-multiarch", "-q"]
    if vmlinux is not None:
        parts.append(str(vmlinux))
    parts += ["-ex", f"'set architecture {GDB_ARCH.get(arch, arch)}'"]
    parts += ["-ex", f"'target remote 127.0.0.1:{port}'"]
    lines = ["attach with:", "  " + " ".join(parts)]
    if vmlinux is not None:
        lines.append(f"kernel symbols: {vmlinux}")
    elif release is None:
        lines.append(f"kernel symbols: none ({kernel} names no release; attaching without)")
    else:
        package = f"linux-image-{release}-dbg"
        lines += [
            f"kernel symbols: not on this host. Debian ships them in {package} "
            f"({DEBUG_VMLINUX.format(release=release)}); the guest image does not include it.",
            f"  get them: apt-get download {package}:{DEBIAN_ARCH.get(arch, arch)} && "
            f"dpkg-deb -x {package}_*.deb dbg/  then add  dbg/usr/lib/debug/boot/vmlinux-"
            f"{release}  before -ex",
        ]
    if not shutil.which("gdb-multiarch"):
        lines.append("gdb-multiarch is not installed: apt-get install gdb-multiarch")
    return lines
