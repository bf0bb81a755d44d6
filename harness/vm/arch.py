"""How QEMU boots each guest architecture: the one place per-arch facts of the command line live.

Machine type, TCG CPU model, firmware, console device, the kernel's base arguments and its
command line limit, and how virtio devices attach (``virtio-*-device`` on the virtio-mmio
transport of ``virt``, ``virtio-*-pci`` on a PCI machine) differ by architecture and by nothing
else: the image recipe (``images/<arch>.toml``) says what goes *into* the image, this table says
how QEMU runs it. :mod:`harness.vm.qemu_args` turns a profile plus a
:class:`~harness.vm.config.MachineConfig` into argv; nothing else hard-codes these values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.errors import ConfigError

#: Arguments every guest kernel gets: quiet boot, reboot (= QEMU exit under -no-reboot) at
#: once on panic, and no crypto self-tests (seconds of TCG time, nothing the guest relies on).
COMMON_KERNEL_ARGS: tuple[str, ...] = ("quiet", "panic=-1", "cryptomgr.notests")


@dataclass(frozen=True)
class ArchProfile:
    """One architecture's QEMU command line facts."""

    arch: str
    qemu_binary: str  # qemu-system-<arch>
    debian_package: str  # the host package that ships qemu_binary (and its firmware)
    machine: str  # -machine
    cpu: str  # -cpu under TCG (KVM always uses "host")
    console: str  # the kernel's name for the serial port QEMU's -serial drives
    virtio_suffix: str  # "device" (virtio-mmio) or "pci"
    #: Firmware arguments: riscv64 `virt` starts in M-mode and needs an SBI implementation
    #: (OpenSBI, shipped by qemu-system-misc and chosen by `-bios default`) to start the kernel.
    firmware: tuple[str, ...] = ()
    #: COMMAND_LINE_SIZE of the kernel (bytes, including the NUL): what it keeps of -append.
    command_line_size: int = 2048
    #: The guest's power-off makes QEMU exit with status 0 without a QMP ``SHUTDOWN`` event:
    #: on riscv64 `virt` OpenSBI powers off through the SiFive test device, which QEMU 7.2
    #: implements as a plain exit(0). (A panic or reset still sends its event.)
    silent_poweroff: bool = False
    #: How much longer this guest's deadlines are than aarch64's under TCG on the same host:
    #: every contract and campaign timeout is scaled by it (on top of --timeout-multiplier),
    #: so one contract file serves both lanes.
    timeout_scale: float = 1.0

    @property
    def kernel_args(self) -> tuple[str, ...]:
        """The base kernel command line: the console, then :data:`COMMON_KERNEL_ARGS`."""
        return (f"console={self.console}", *COMMON_KERNEL_ARGS)

    def virtio_device(self, kind: str) -> str:
        """The QEMU device name of a virtio ``kind`` (``blk``, ``rng``) on this transport."""
        return f"virtio-{kind}-{self.virtio_suffix}"


ARCH_PROFILES: Mapping[str, ArchProfile] = {
    "aarch64": ArchProfile(
        "aarch64",
        "qemu-system-aarch64",
        "qemu-system-arm",
        machine="virt",
        cpu="cortex-a57",
        console="ttyAMA0",  # the PL011 UART of `virt`
        virtio_suffix="device",
    ),
    "riscv64": ArchProfile(
        "riscv64",
        "qemu-system-riscv64",
        "qemu-system-misc",
        machine="virt",
        cpu="rv64",
        console="ttyS0",  # the NS16550A UART of `virt`
        virtio_suffix="device",
        firmware=("-bios", "default"),
        command_line_size=1024,  # arch/riscv/include/uapi/asm/setup.h
        silent_poweroff=True,
        # The contract's timeouts are failure deadlines with wide margins on aarch64 (a boot
        # takes 3 s of its 75); riscv64 boots reach 30-45 s (no host-compiled bytecode, a
        # slower TCG target), so its deadlines are doubled.
        timeout_scale=2.0,
    ),
    "x86_64": ArchProfile(
        "x86_64",
        "qemu-system-x86_64",
        "qemu-system-x86",
        machine="q35",
        cpu="max",
        console="ttyS0",
        virtio_suffix="pci",
    ),
}


def profile(arch: str) -> ArchProfile:
    """The profile of ``arch``; :class:`ConfigError` names the supported ones otherwise."""
    try:
        return ARCH_PROFILES[arch]
    except KeyError:
        known = ", ".join(sorted(ARCH_PROFILES))
        raise ConfigError(
            f"unsupported guest architecture {arch!r}: supported are {known}"
        ) from None
