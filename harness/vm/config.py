"""Typed, validated configuration of one QEMU machine.

A :class:`MachineConfig` says everything needed to rebuild the command line (arch, machine,
cpu, memory, kernel, initramfs, kernel arguments, disks, extra devices and arguments); it holds
no runtime state, so a reboot on the same disk is ``config.replace(kernel_args=...)`` handed to
a new :class:`harness.vm.machine.Machine`. Validation happens in ``__post_init__`` so a bad value
fails where it is written, with the field name, not later as a QEMU error.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import ConfigError
from harness.vm.arch import ARCH_PROFILES, ArchProfile
from harness.vm.record import RecordReplay, check_recordable

if TYPE_CHECKING:
    from harness.image import GuestImage

Accel = Literal["auto", "kvm", "tcg"]
ACCELS: tuple[str, ...] = ("auto", "kvm", "tcg")

#: QEMU's ``cache=`` modes for ``-drive`` (see qemu(1), "cache=cache").
CACHE_MODES: tuple[str, ...] = ("none", "writeback", "writethrough", "directsync", "unsafe")
DISK_FORMATS: tuple[str, ...] = ("raw", "qcow2")

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")
_OPTION_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


def _escape_option_value(value: str) -> str:
    """QEMU's option syntax separates with commas; a literal comma is written twice."""
    return value.replace(",", ",,")


def _options(pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    items = tuple(pairs.items()) if isinstance(pairs, Mapping) else tuple(pairs)
    for key, value in items:
        if not isinstance(key, str) or not _OPTION_KEY.match(key):
            raise ConfigError(f"invalid QEMU option name {key!r}")
        if not isinstance(value, str):
            raise ConfigError(f"QEMU option {key}= must be a string, got {value!r}")
    return items


@dataclass(frozen=True)
class DiskSpec:
    """One block device: a ``-drive if=none`` backend plus the virtio-blk frontend.

    ``file`` is a host path or any URI QEMU's block layer takes, e.g.
    ``nbd+unix:///?socket=/tmp/x/nbd.sock`` for a disk served by nbdkit (power-cut tests put a
    server between QEMU and the file). ``driver_options`` are extra ``-drive`` keys
    (``aio=threads``, ``file.locking=off``, ``discard=unmap``); ``device_options`` extra
    ``-device`` keys (``serial=state0``, ``logical_block_size=4096``).
    """

    file: str
    format: str | None = "raw"
    cache: str = "writeback"
    id: str = ""
    read_only: bool = False
    device: str | None = None  # default: virtio-blk-<virtio suffix of the arch/profile>
    driver_options: tuple[tuple[str, str], ...] = ()
    device_options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.file:
            raise ConfigError("DiskSpec.file must not be empty")
        object.__setattr__(self, "file", os.fspath(self.file))
        if self.cache not in CACHE_MODES:
            raise ConfigError(f"DiskSpec.cache={self.cache!r}: choose one of {CACHE_MODES}")
        if self.format is not None and self.format not in DISK_FORMATS:
            raise ConfigError(f"DiskSpec.format={self.format!r}: choose one of {DISK_FORMATS}")
        if self.id and not _ID.match(self.id):
            raise ConfigError(f"DiskSpec.id={self.id!r} is not a valid QEMU id")
        object.__setattr__(self, "driver_options", _options(self.driver_options))
        object.__setattr__(self, "device_options", _options(self.device_options))

    @classmethod
    def nbd_unix(cls, socket_path: str | os.PathLike[str], export: str = "", **kwargs: Any):
        """A disk served over NBD on a unix socket (nbdkit, qemu-nbd)."""
        return cls(file=f"nbd+unix:///{export}?socket={os.fspath(socket_path)}", **kwargs)

    @property
    def is_local_file(self) -> bool:
        return "://" not in self.file

    def drive_arg(self, drive_id: str) -> str:
        parts = [f"if=none,id={drive_id}", f"file={_escape_option_value(self.file)}"]
        if self.format is not None:
            parts.append(f"format={self.format}")
        parts.append(f"cache={self.cache}")
        if self.read_only:
            parts.append("readonly=on")
        parts.extend(f"{k}={_escape_option_value(v)}" for k, v in self.driver_options)
        return ",".join(parts)

    def device_arg(self, drive_id: str, virtio_suffix: str) -> str:
        device = self.device or f"virtio-blk-{virtio_suffix}"
        parts = [device, f"drive={drive_id}"]
        parts.extend(f"{k}={_escape_option_value(v)}" for k, v in self.device_options)
        return ",".join(parts)


@dataclass(frozen=True)
class MachineConfig:
    """Everything that defines one QEMU guest (no runtime state).

    Args:
        arch: guest architecture (``aarch64``, ``riscv64``); selects its profile in
            :mod:`harness.vm.arch` (QEMU binary, machine, CPU, firmware, virtio transport).
        qemu_binary: override the binary (a path or a name on PATH; tests pass a fake).
        machine: ``-machine`` type. cpu: ``-cpu`` model under TCG (KVM always uses ``host``).
        memory_mib, smp: RAM and vCPUs.
        kernel, initramfs: ``-kernel``/``-initrd`` files.
        kernel_args: the kernel command line, one argument per item.
        disks: block devices, in order (``/dev/vda``, ``/dev/vdb``, ...).
        devices: extra ``-device`` values (``virtio-rng-device``).
        extra_args: raw arguments appended last (escape hatch for experiments).
        accel: ``auto`` (KVM if usable for this arch, else TCG), ``kvm`` or ``tcg``.
        icount: ``-icount`` value (``shift=auto``): a deterministic instruction clock; TCG
            only, so ``accel="auto"`` becomes ``tcg`` and ``accel="kvm"`` is an error.
        virtio_suffix: ``device`` (virtio-mmio, ``virt``) or ``pci``.
        no_reboot: ``-no-reboot``: a guest reboot or panic ends QEMU, so each boot is one
            process and a reboot on the same disk is a new process.
        start_paused: ``-S``: the vCPU waits for QMP ``cont`` (attach a debugger first).
        pdeathsig: run QEMU under ``setpriv --pdeathsig KILL`` so it dies with its parent
            thread even when the harness is SIGKILLed (an xdist worker crash).
        debug_qmp_socket: also open a second QMP server socket a developer can attach to.
        record: record this boot into a replay log, or replay it from one
            (:mod:`harness.vm.record`); ``accel="auto"`` then means TCG, KVM is refused, and
            so is a disk that is not a local file (the power cut's NBD server).
    """

    arch: str = "aarch64"
    qemu_binary: str | None = None
    machine: str | None = None
    cpu: str | None = None
    memory_mib: int = 512
    smp: int = 1
    kernel: Path | None = None
    initramfs: Path | None = None
    kernel_args: tuple[str, ...] = ()
    disks: tuple[DiskSpec, ...] = ()
    devices: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    accel: Accel = "auto"
    icount: str | None = None
    virtio_suffix: str | None = None
    no_reboot: bool = True
    start_paused: bool = False
    pdeathsig: bool = True
    debug_qmp_socket: Path | None = None
    record: RecordReplay | None = None
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.arch not in ARCH_PROFILES:
            raise ConfigError(
                f"MachineConfig.arch={self.arch!r}: supported are {sorted(ARCH_PROFILES)}"
            )
        if self.accel not in ACCELS:
            raise ConfigError(f"MachineConfig.accel={self.accel!r}: choose one of {ACCELS}")
        if not 16 <= self.memory_mib <= 65536:
            raise ConfigError(f"MachineConfig.memory_mib={self.memory_mib}: 16..65536")
        if not 1 <= self.smp <= 64:
            raise ConfigError(f"MachineConfig.smp={self.smp}: 1..64")
        if self.icount is not None:
            if not self.icount or any(c.isspace() for c in self.icount):
                raise ConfigError(f"MachineConfig.icount={self.icount!r}: e.g. 'shift=auto'")
            if self.accel == "kvm":
                raise ConfigError("MachineConfig.icount needs TCG; accel='kvm' contradicts it")
            object.__setattr__(self, "accel", "tcg")  # "auto" may only choose TCG here
        for name in ("kernel", "initramfs", "debug_qmp_socket"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if self.initramfs is not None and self.kernel is None:
            raise ConfigError("MachineConfig.initramfs needs a kernel")
        if self.kernel_args and self.kernel is None:
            raise ConfigError("MachineConfig.kernel_args need a kernel")
        object.__setattr__(self, "kernel_args", tuple(self.kernel_args))
        for arg in self.kernel_args:
            if not arg or any(c.isspace() for c in arg):
                raise ConfigError(f"kernel argument {arg!r} is empty or contains whitespace")
        object.__setattr__(self, "disks", tuple(self.disks))
        object.__setattr__(self, "devices", tuple(self.devices))
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        object.__setattr__(self, "env", tuple(self.env))
        if self.record is not None:
            if self.icount is not None:
                raise ConfigError(
                    "MachineConfig.icount and .record both set: the record carries the -icount "
                    "value (RecordReplay.icount)"
                )
            if self.accel == "auto":
                object.__setattr__(self, "accel", "tcg")
            check_recordable(self.accel == "kvm", [disk.is_local_file for disk in self.disks])

    # Resolved values: the arch profile (harness.vm.arch) fills what the config leaves open.
    @property
    def defaults(self) -> ArchProfile:
        return ARCH_PROFILES[self.arch]

    @property
    def qemu(self) -> str:
        return self.qemu_binary or self.defaults.qemu_binary

    @property
    def machine_type(self) -> str:
        return self.machine or self.defaults.machine

    @property
    def tcg_cpu(self) -> str:
        return self.cpu or self.defaults.cpu

    @property
    def virtio(self) -> str:
        return self.virtio_suffix or self.defaults.virtio_suffix

    def replace(self, **changes: Any) -> MachineConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_kernel_args(self, *extra: str) -> MachineConfig:
        """A copy whose kernel command line has ``extra`` appended."""
        return self.replace(kernel_args=(*self.kernel_args, *extra))

    @classmethod
    def from_image(
        cls,
        image: GuestImage,
        *,
        disks: Iterable[DiskSpec] = (),
        kernel_args: Iterable[str] = (),
        devices: Iterable[str] | None = None,
        **overrides: Any,
    ) -> MachineConfig:
        """The config to boot ``image`` as its architecture's profile (:mod:`harness.vm.arch`)
        describes.

        The profile's kernel arguments (``console=...`` first) come first, then
        ``kernel_args``. ``devices`` defaults to a virtio-rng, the guest's entropy source for
        the device key.
        """
        profile = ARCH_PROFILES[image.arch]
        if devices is None:
            devices = (profile.virtio_device("rng"),)
        return cls(
            arch=image.arch,
            kernel=Path(image.kernel),
            initramfs=Path(image.initramfs),
            kernel_args=(*profile.kernel_args, *kernel_args),
            disks=tuple(disks),
            devices=tuple(devices),
            **overrides,
        )
