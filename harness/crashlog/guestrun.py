"""The VM side of ``crash-states``: one recorded guest run, and boots of single crash states.

**Recording.** The power-cut workload (``sq.mode=powercut``) on a blank disk, with a fixed
number of writes (``sq.writes``) after which it powers off by itself. The disk goes through
QEMU's ``blklogwrites`` filter, which passes every request on and appends it to a log file::

    -blockdev driver=file,filename=disk.img,node-name=base
    -blockdev driver=file,filename=writes.log,node-name=wlog
    -blockdev driver=blklogwrites,file=base,log=wlog,log-sector-size=512,node-name=state0
    -device virtio-blk-<suffix>,drive=state0

The console's ``POWERCUT: issue``/``acked`` lines give the last issued and acknowledged
sequence numbers, which the log must agree with (:mod:`harness.crashlog.campaign`).

**Booting a state.** The image of one crash state as a plain disk, the same mode with
``sq.writes=0``: the guest's statefsd replays (and seals) it, the workload's check prints
``SELFTEST: powercut recover ok head=<m>`` or a FAIL line, and the guest powers off. That is
the cheapest boot that reports the guest's own verdict: no other service starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.contract.spec import Contract
from harness.deadline import Deadline
from harness.powercut.watch import BootWatch, boot_contract
from harness.vm.arch import profile
from harness.vm.config import DiskSpec, MachineConfig
from harness.vm.machine import Machine

#: The log's sector size: the virtio disk's logical sector, so entries name device sectors.
LOG_SECTOR_SIZE = 512
RECOVERY_TIMEOUT = 60.0
#: A recorded run writes this many batches at most per ``WRITE_TIMEOUT`` seconds of TCG.
WRITE_TIMEOUT = 600.0
POWEROFF_TIMEOUT = 30.0
NODE = "state0"


@dataclass
class GuestRun:
    """What one guest boot showed: the recovered head, the writer's last issued and acked
    numbers, and why it failed ("" if it did not)."""

    head: int | None
    issued: int | None
    acked: int | None
    failure: str
    seconds: float
    artifacts: str
    excerpt: str


def blklogwrites_args(disk: Path, log: Path, virtio_suffix: str) -> tuple[tuple[str, ...], str]:
    """The ``-blockdev`` arguments and the ``-device`` of a disk whose writes are logged."""
    args = (
        "-blockdev",
        f"driver=file,filename={disk},node-name=base,cache.direct=off",
        "-blockdev",
        f"driver=file,filename={log},node-name=wlog",
        "-blockdev",
        f"driver=blklogwrites,file=base,log=wlog,log-sector-size={LOG_SECTOR_SIZE},node-name={NODE}",
    )
    return args, f"virtio-blk-{virtio_suffix},drive={NODE}"


def _kernel_args(nonce: str, writes: int) -> tuple[str, ...]:
    return ("sq.mode=powercut", "sq.boot=1", f"sq.nonce={nonce}", f"sq.writes={writes}")


def _watch(
    machine: Machine, contract: Contract, *, multiplier: float, write_timeout: float
) -> BootWatch:
    watch = BootWatch(
        machine, boot_contract(contract, 1, timeout=RECOVERY_TIMEOUT), multiplier=multiplier
    )
    if watch.until_recovered(Deadline(RECOVERY_TIMEOUT * multiplier, label="recovery")):
        deadline = Deadline((write_timeout + POWEROFF_TIMEOUT) * multiplier, label="power-off")
        watch.until_end(deadline)
    return watch


def _outcome(machine: Machine, watch: BootWatch, started: float) -> GuestRun:
    failure = watch.failure
    if not failure and watch.recovered is None:
        failure = "no recovery marker"
    if not failure and not watch.ended:
        failure = "the guest did not power off"
    if not failure:
        machine.wait(Deadline(5.0, label="QEMU exit after power-off"))
        if machine.exit_info is None or not machine.exit_info.guest_powered_off:
            how = machine.exit_info.describe() if machine.exit_info else "?"
            failure = f"the guest did not power off cleanly: {how}"
    return GuestRun(
        head=watch.recovered,
        issued=watch.progress.issued,
        acked=watch.progress.acked,
        failure=failure,
        seconds=machine.now() - started,
        artifacts=str(machine.artifacts.path),
        excerpt=watch.excerpt() if failure else "",
    )


def record_run(
    image: Any,
    disk: Path,
    log: Path,
    *,
    nonce: str,
    writes: int,
    run_dir: Path,
    accel: str = "auto",
    multiplier: float = 1.0,
) -> GuestRun:
    """Boot the workload on ``disk`` (blank) with every request logged to ``log``."""
    log.write_bytes(b"")
    args, device = blklogwrites_args(disk, log, profile(image.arch).virtio_suffix)
    base = MachineConfig.from_image(image, kernel_args=_kernel_args(nonce, writes), accel=accel)
    config = base.replace(devices=(*base.devices, device), extra_args=(*base.extra_args, *args))
    machine = Machine(config, name="record", artifacts_root=run_dir)
    with machine:
        watch = _watch(machine, Contract.load(), multiplier=multiplier, write_timeout=WRITE_TIMEOUT)
        watch.drain()
        return _outcome(machine, watch, 0.0)


def boot_state(
    image: Any,
    disk: Path,
    *,
    nonce: str,
    name: str,
    run_dir: Path,
    accel: str = "auto",
    multiplier: float = 1.0,
) -> GuestRun:
    """Boot one crash state's image (``disk``, rewritten by the boot) and read the guest's
    verdict: the head its recovery found, or its failure."""
    config = MachineConfig.from_image(
        image,
        disks=(DiskSpec(str(disk), format="raw", cache="writeback"),),
        kernel_args=_kernel_args(nonce, 0),
        accel=accel,
    )
    machine = Machine(config, name=name, artifacts_root=run_dir)
    with machine:
        watch = _watch(machine, Contract.load(), multiplier=multiplier, write_timeout=0.0)
        watch.drain()
        return _outcome(machine, watch, 0.0)
