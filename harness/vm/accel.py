"""Choose the accelerator: KVM when it works for the guest's architecture, TCG otherwise.

"``/dev/kvm`` exists" is not enough: KVM runs guests of the host's own architecture only (an
x86_64 host cannot run an aarch64 guest under KVM), and the device may be there but not
openable (permissions, a container, nested virtualisation switched off). We check, in order:
same architecture, ``/dev/kvm`` opens read-write, and ``KVM_GET_API_VERSION`` answers 12 (the
stable API). The decision carries its reason so logs and reports say why a run is slow.
"""

from __future__ import annotations

import fcntl
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass

from harness.errors import AccelUnavailable

log = logging.getLogger(__name__)

KVM_DEVICE = "/dev/kvm"
_KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO=0xAE, 0x00)
_KVM_API_VERSION = 12

_MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "armv8l": "aarch64"}


def host_arch() -> str:
    machine = platform.machine().lower()
    return _MACHINE_ALIASES.get(machine, machine)


def probe_kvm_device(path: str = KVM_DEVICE) -> str | None:
    """None if ``path`` is a working KVM device, else why not."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot open {path}: {exc.strerror}"
    try:
        version = fcntl.ioctl(fd, _KVM_GET_API_VERSION)
    except OSError as exc:
        return f"{path} does not answer KVM_GET_API_VERSION: {exc.strerror}"
    finally:
        os.close(fd)
    if version != _KVM_API_VERSION:
        return f"{path} reports KVM API version {version}, expected {_KVM_API_VERSION}"
    return None


@dataclass(frozen=True)
class AccelChoice:
    """The accelerator a machine will use, and why."""

    name: str  # "kvm" or "tcg"
    reason: str

    @property
    def is_kvm(self) -> bool:
        return self.name == "kvm"


def choose_accel(
    guest_arch: str,
    requested: str = "auto",
    *,
    host: Callable[[], str] = host_arch,
    probe: Callable[[], str | None] = probe_kvm_device,
) -> AccelChoice:
    """Resolve ``requested`` (``auto``/``kvm``/``tcg``) for a guest of ``guest_arch``.

    ``host`` and ``probe`` are injectable so the fallback logic is tested without KVM.
    Raises :class:`AccelUnavailable` when ``kvm`` is forced but cannot work.
    """
    if requested == "tcg":
        return AccelChoice("tcg", "TCG requested")
    host_name = host()
    if host_name != guest_arch:
        problem: str | None = f"guest arch {guest_arch} differs from host arch {host_name}"
    else:
        problem = probe()
    if problem is None:
        choice = AccelChoice("kvm", f"KVM usable for {guest_arch} on a {host_name} host")
    elif requested == "kvm":
        raise AccelUnavailable("kvm", problem)
    else:
        choice = AccelChoice("tcg", f"KVM not usable ({problem}); using TCG")
    log.debug("accelerator for %s guest: %s (%s)", guest_arch, choice.name, choice.reason)
    return choice
