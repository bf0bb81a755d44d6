"""What the subcommands share: exit codes, the VM options (declared once), logging, and the
set-up every VM-booting command does (run directory, image, disk, base config)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.artifacts import create_unique_dir, default_runs_dir, new_run_id
from harness.contract.progress import ProgressPrinter
from harness.contract.spec import DEFAULT_CONTRACT
from harness.deadline import MULTIPLIER_ENV, parse_duration, parse_multiplier
from harness.diagnosis import FORMAT_FORCE_ARG
from harness.errors import ConfigError, DependencyMissing
from harness.vm.arch import ARCH_PROFILES, profile
from harness.vm.config import ACCELS, CACHE_MODES, DiskSpec, MachineConfig
from harness.vm.disks import DEFAULT_DISK_MIB, create_disk, sparse_copy
from harness.vm.preflight import preflight

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_HARNESS = 2
EXIT_INTERRUPTED = 130


def multiplier_arg(text: str) -> float:
    """argparse type of ``--timeout-multiplier``."""
    try:
        return parse_multiplier(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration_arg(text: str) -> float:
    """argparse type of ``--timeout`` (90, 90s, 2m)."""
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_vm_options(
    parser: argparse.ArgumentParser, *, disk: bool = True, contract: bool = True
) -> None:
    """The ``virtual machine`` option group. ``disk``: the disk options (``--disk``,
    ``--disk-size-mib``, ``--cache``); ``contract``: ``--contract``."""
    group = parser.add_argument_group("virtual machine")
    group.add_argument(
        "--arch",
        default="aarch64",
        choices=sorted(ARCH_PROFILES),
        help="guest architecture (default aarch64)",
    )
    group.add_argument(
        "--accel",
        choices=ACCELS,
        default="auto",
        help="auto: KVM when usable for the guest arch, else TCG (default)",
    )
    if disk:
        group.add_argument(
            "--disk", type=Path, help="use this raw disk image instead of a fresh one (kept as is)"
        )
        group.add_argument(
            "--disk-size-mib",
            type=int,
            default=DEFAULT_DISK_MIB,
            help=f"size of a fresh disk (default {DEFAULT_DISK_MIB})",
        )
        group.add_argument(
            "--cache",
            choices=CACHE_MODES,
            default="writeback",
            help="QEMU -drive cache mode (default writeback)",
        )
        group.add_argument(
            "--format-disk",
            action="store_true",
            help="let the guest format a --disk that is neither blank nor a statefs volume "
            f"(kernel argument {FORMAT_FORCE_ARG}; destroys what is on it). Without it, "
            "statefsd refuses such a disk and the run fails naming the refusal",
        )
    group.add_argument(
        "--image-dir",
        type=Path,
        default=None,
        help="boot the image built in this directory as it is (vmlinuz, initramfs.cpio, "
        "manifest; e.g. another checkout's build/images/aarch64); default: build it if stale",
    )
    group.add_argument(
        "--runs-dir", type=Path, default=None, help="where run directories go (default build/runs)"
    )
    group.add_argument(
        "--timeout-multiplier",
        type=multiplier_arg,
        default=None,
        help=f"scale every timeout (default ${MULTIPLIER_ENV} or 1)",
    )
    if contract:
        add_contract_option(group)


def add_contract_option(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--contract",
        type=Path,
        default=DEFAULT_CONTRACT,
        help="marker contract file (default: the one shipped in harness/contract/)",
    )


def resolve_multiplier(args: argparse.Namespace) -> float:
    """``--timeout-multiplier``, else ``$QEMU_TIMEOUT_MULTIPLIER``, else 1; times the guest
    architecture's own TCG slowdown (:attr:`harness.vm.arch.ArchProfile.timeout_scale`)."""
    arch_scale = profile(getattr(args, "arch", "aarch64")).timeout_scale
    if args.timeout_multiplier is not None:
        return float(args.timeout_multiplier) * arch_scale
    env = os.environ.get(MULTIPLIER_ENV)
    if env:
        try:
            return parse_multiplier(env) * arch_scale
        except ConfigError as exc:
            raise ConfigError(f"${MULTIPLIER_ENV}: {exc}") from None
    return arch_scale


def ensure_guest_image(arch: str, out: ProgressPrinter, image_dir: Path | None = None) -> Any:
    """Build the guest image if it is stale (or take the one in ``image_dir`` as it is); say
    where it is and how long that took."""
    try:
        from harness.image import ensure_image, load_image
    except ImportError as exc:
        raise DependencyMissing(f"the guest image builder is not available: {exc}") from exc
    started = time.monotonic()
    if image_dir is not None:
        image = load_image(image_dir)
        if image.arch != arch:
            raise ConfigError(f"--image-dir {image_dir} holds an {image.arch} image, not {arch}")
    else:
        image = ensure_image(arch, progress=True)
    out.say(f"image: {image.kernel.parent} ({time.monotonic() - started:.1f} s)")
    return image


def setup_logging(verbosity: int, run_dir: Path | None = None) -> None:
    """Warnings on stderr (everything with ``-v``; QMP traffic with ``-vv``), and everything
    into ``<run>/harness.log``."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if verbosity == 0 else logging.DEBUG)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if verbosity < 2:
        console.addFilter(
            lambda record: (
                not record.name.startswith("qemu.qmp") or record.levelno >= logging.WARNING
            )
        )
    root.addHandler(console)
    if run_dir is not None:
        file_handler = logging.FileHandler(run_dir / "harness.log", encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(file_handler)


def new_run_dir(args: argparse.Namespace, prefix: str = "") -> Path:
    """A fresh run directory under ``--runs-dir``, with ``harness.log`` logging into it."""
    run_dir = create_unique_dir(args.runs_dir or default_runs_dir(), f"{prefix}{new_run_id()}")
    setup_logging(args.verbose, run_dir)
    return run_dir


@dataclass(frozen=True)
class VmSession:
    """What ``run`` and ``boot`` set up before their first QEMU: the run directory, the
    image, the disk and the base machine config."""

    run_dir: Path
    image: Any
    disk: Path
    config: MachineConfig


def start_vm_session(
    args: argparse.Namespace,
    out: ProgressPrinter,
    *,
    disk_from: Path | None = None,
    **config_extra: Any,
) -> VmSession:
    """Image (built if stale), checks, then run directory, disk and base config.

    Everything that can be checked before a run exists is checked first (the disk, the QEMU
    binary, the kernel and initramfs: :func:`harness.vm.preflight.preflight`), so a set-up
    problem leaves no run directory and no fresh disk behind. ``disk_from``: a disk to copy
    into the run directory and boot (a replay on a kept disk).
    """
    if args.disk is not None and not args.disk.is_file():
        raise ConfigError(f"--disk {args.disk} does not exist")
    image_dir = getattr(args, "image_dir", None)
    image = (
        ensure_guest_image(args.arch, out, image_dir)
        if image_dir is not None
        else ensure_guest_image(args.arch, out)
    )
    config = MachineConfig.from_image(image, accel=args.accel, **config_extra)
    preflight(config)
    run_dir = new_run_dir(args)
    if disk_from is not None:
        disk = run_dir / "disk.img"
        sparse_copy(disk_from, disk)
    else:
        disk = args.disk or create_disk(run_dir / "disk.img", args.disk_size_mib)
    config = config.replace(disks=(DiskSpec(str(disk), cache=args.cache),))
    return VmSession(run_dir, image, disk, config)
