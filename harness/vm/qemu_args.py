"""The QEMU command line, built from a config and the endpoints of one launch.

Pure: no I/O and no process, so every flag is unit-tested. The harness listens on two unix
sockets in the VM's private directory and QEMU connects to them as a client (the chardev
connect happens during QEMU's start-up, before any vCPU runs), so no console byte and no QMP
event can be missed, and a QEMU that fails to start cannot leave a half-open socket behind.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError
from harness.vm.accel import AccelChoice
from harness.vm.config import MachineConfig
from harness.vm.record import DIRECT_SUFFIX, blkreplay_drive_args, check_recordable

SERIAL_CHARDEV = "serial0"
QMP_CHARDEV = "qmp0"


@dataclass(frozen=True)
class Endpoints:
    """Where this launch's sockets live (inside the VM's private temp dir)."""

    serial_socket: Path
    qmp_socket: Path


def kernel_command_line(config: MachineConfig) -> str:
    """The ``-append`` string; raises :class:`ConfigError` if the kernel would truncate it."""
    line = " ".join(config.kernel_args)
    limit = config.defaults.command_line_size
    size = len(line.encode("utf-8"))
    if size > limit - 1:
        longest = max(config.kernel_args, key=len)
        raise ConfigError(
            f"kernel command line is {size} bytes; the {config.arch} kernel keeps only "
            f"{limit - 1} (longest argument: {longest[:40]}... {len(longest)} bytes)"
        )
    return line


def _path_arg(value: os.PathLike[str] | str) -> str:
    return os.fspath(value).replace(",", ",,")


def build_argv(
    config: MachineConfig,
    endpoints: Endpoints,
    accel: AccelChoice,
    *,
    qemu_path: str | None = None,
    name: str = "vm",
) -> list[str]:
    """The complete argv (QEMU binary first; no ``setpriv`` wrapper, see Machine)."""
    argv: list[str] = [qemu_path or config.qemu]
    argv += ["-name", name, "-nodefaults", "-no-user-config", "-display", "none"]
    argv += ["-msg", "timestamp=on"]
    argv += ["-machine", config.machine_type]
    argv += list(config.defaults.firmware)
    argv += ["-accel", accel.name]
    argv += ["-cpu", "host" if accel.is_kvm else config.tcg_cpu]
    if config.icount is not None:
        if accel.is_kvm:
            raise ConfigError(f"-icount {config.icount} needs TCG, but {accel.name} was chosen")
        argv += ["-icount", config.icount]
    argv += ["-smp", str(config.smp), "-m", str(config.memory_mib)]
    if config.record is not None:
        check_recordable(accel.is_kvm, [disk.is_local_file for disk in config.disks])
        argv += ["-icount", config.record.icount_arg()]
    if config.no_reboot:
        argv.append("-no-reboot")
    if config.start_paused:
        argv.append("-S")
    if config.kernel is not None:
        argv += ["-kernel", _path_arg(config.kernel)]
    if config.initramfs is not None:
        argv += ["-initrd", _path_arg(config.initramfs)]
    if config.kernel_args:
        argv += ["-append", kernel_command_line(config)]

    argv += ["-chardev", f"socket,id={SERIAL_CHARDEV},path={_path_arg(endpoints.serial_socket)}"]
    argv += ["-serial", f"chardev:{SERIAL_CHARDEV}"]
    argv += ["-chardev", f"socket,id={QMP_CHARDEV},path={_path_arg(endpoints.qmp_socket)}"]
    argv += ["-mon", f"chardev={QMP_CHARDEV},mode=control"]
    if config.debug_qmp_socket is not None:
        argv += ["-qmp", f"unix:{_path_arg(config.debug_qmp_socket)},server=on,wait=off"]

    for index, disk in enumerate(config.disks):
        drive_id = disk.id or f"d{index}"
        if config.record is not None:
            argv += blkreplay_drive_args(disk.drive_arg(drive_id + DIRECT_SUFFIX), drive_id)
        else:
            argv += ["-drive", disk.drive_arg(drive_id)]
        argv += ["-device", disk.device_arg(drive_id, config.virtio)]
    for device in config.devices:
        argv += ["-device", device]
    argv += list(config.extra_args)
    _check_unique_drive_ids(config)
    return argv


def _check_unique_drive_ids(config: MachineConfig) -> None:
    ids = [disk.id or f"d{i}" for i, disk in enumerate(config.disks)]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"duplicate drive ids: {', '.join(duplicates)}")


def display_argv(argv: Sequence[str]) -> str:
    """One argument per line, shell-quoted: how ``qemu.argv`` stores it for copy-paste."""
    return " \\\n    ".join(shlex.quote(arg) for arg in argv) + "\n"


#: What ``qemu.argv`` says before the command.
HAND_RUN_NOTE = (
    "# The VM as the harness ran it, ready to run by hand: the console is on this terminal\n"
    "# (Ctrl-A X quits QEMU) and QMP listens on ./qmp.sock. The harness's own console and QMP\n"
    "# sockets were private to its run; the exact command it ran is in run.json (argv).\n"
)


def hand_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with the harness's private console and QMP chardevs replaced by ones a person
    can use: the serial console on stdio, QMP on ``qmp.sock`` in the current directory.

    The harness's sockets live in a private directory removed when the VM stops, so the exact
    argv cannot be run again; everything else (machine, kernel, disks) is unchanged.
    """
    out = list(argv)
    for index, arg in enumerate(out[:-1]):
        if arg != "-chardev":
            continue
        value = out[index + 1]
        if value.startswith(f"socket,id={SERIAL_CHARDEV},"):
            out[index + 1] = f"stdio,id={SERIAL_CHARDEV},mux=on,signal=off"
        elif value.startswith(f"socket,id={QMP_CHARDEV},"):
            out[index + 1] = f"socket,id={QMP_CHARDEV},path=qmp.sock,server=on,wait=off"
    if "-serial" in out:  # the QEMU monitor shares the terminal: Ctrl-A C switches to it
        at = out.index("-serial") + 2
        out[at:at] = ["-mon", f"chardev={SERIAL_CHARDEV},mode=readline"]
    return out


def hand_script(argv: Sequence[str]) -> str:
    """The text of ``qemu.argv``: a note, then :func:`hand_argv` one argument per line."""
    return HAND_RUN_NOTE + display_argv(hand_argv(argv))
