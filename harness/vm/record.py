"""QEMU record/replay on the command line: ``-icount ...,rr=record|replay`` and ``blkreplay``.

QEMU can record a whole TCG run (every clock read, interrupt, console byte and disk
completion) into one log and later replay it instruction for instruction. Three things must hold
for a replay to be exact, and this module turns them into argv or refusals:

* the instruction counter drives guest time: ``-icount shift=auto,rr=MODE,rrfile=LOG``, under
  TCG only (KVM runs the guest on the real CPU, which nothing can replay);
* every disk goes through the ``blkreplay`` filter, which records the order in which requests
  complete (the data is not logged: the replay must start from the same disk contents, which is
  why a recorded run keeps a qcow2 overlay per boot, see :mod:`harness.vm.overlays`);
* no device may talk to something outside QEMU whose answers are not recorded. A disk served by
  nbdkit (the power cut) is one: the server answers from its own state, so the replay could not
  repeat them. That combination is refused with :class:`ConfigError`.

Pure: no I/O, so every flag is unit-tested.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.errors import ConfigError

RrMode = Literal["record", "replay"]
RR_MODES: tuple[str, ...] = ("record", "replay")

#: Suffix of the raw node under each blkreplay filter (``d0-direct`` under ``d0``).
DIRECT_SUFFIX = "-direct"

POWERCUT_REFUSAL = (
    "record/replay cannot run with the power cut: the disk is served by nbdkit, outside QEMU, "
    "so its answers are not in the record and a replay could not repeat them "
    "(record a run on a local disk file instead)"
)


@dataclass(frozen=True)
class RecordReplay:
    """Record this boot into ``rrfile``, or replay it from there.

    Args:
        mode: ``record`` or ``replay``.
        rrfile: QEMU's event log (written when recording, read when replaying).
        icount: the rest of the ``-icount`` value; ``shift=auto`` lets QEMU adapt the
            instruction rate to real time while recording. The replay uses the record's.
    """

    mode: RrMode
    rrfile: Path
    icount: str = "shift=auto"

    def __post_init__(self) -> None:
        if self.mode not in RR_MODES:
            raise ConfigError(f"RecordReplay.mode={self.mode!r}: choose one of {RR_MODES}")
        object.__setattr__(self, "rrfile", Path(self.rrfile))
        keys = {item.partition("=")[0] for item in self.icount.split(",")}
        if not self.icount or any(c.isspace() for c in self.icount) or keys & {"rr", "rrfile"}:
            raise ConfigError(
                f"RecordReplay.icount={self.icount!r}: an -icount value such as 'shift=auto', "
                "without rr= or rrfile= (those are the record's)"
            )

    def icount_arg(self) -> str:
        """The ``-icount`` value."""
        path = os.fspath(self.rrfile).replace(",", ",,")
        return f"{self.icount},rr={self.mode},rrfile={path}"


def check_recordable(accel_is_kvm: bool, disks_local: list[bool]) -> None:
    """Refuse what cannot be recorded or replayed, with what to do instead."""
    if accel_is_kvm:
        raise ConfigError(
            "record/replay needs TCG: under KVM the guest runs on the host CPU and cannot be "
            "replayed (use --accel tcg, which --record selects by itself)"
        )
    if not all(disks_local):
        raise ConfigError(POWERCUT_REFUSAL)


def blkreplay_drive_args(drive_arg: str, drive_id: str) -> list[str]:
    """The two ``-drive`` values for one disk: the image node, and the filter the device uses.

    ``drive_arg`` is the disk's ordinary ``-drive`` value built for ``<drive_id>-direct``; the
    device keeps ``drive=<drive_id>`` and so sees the filter.
    """
    return [
        "-drive",
        drive_arg,
        "-drive",
        f"driver=blkreplay,if=none,image={drive_id}{DIRECT_SUFFIX},id={drive_id}",
    ]
