"""A block device wrapper that fails on command: EIO on the Nth write, flush or read, ENOSPC
from a write (what a sparse image file on a full host file system returns), and writes that
reach the disk only in part before failing.

The plan (:class:`FaultPlan`) lives outside the device so that every device opened from it
shares it: statefsd's REOPEN opens a new device, and a fault must last until the test clears
it, exactly like a disk that keeps failing until someone fixes it. The wrapper also counts the
bytes read, which the replay bounds are checked against.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field

from guest.statefs.blockdev import BlockDevice


@dataclass
class FaultPlan:
    """Which operation fails and how. Operation numbers count from 0 since the last arm."""

    write_at: int | None = None
    flush_at: int | None = None
    read_at: int | None = None
    write_errno: int = errno.EIO
    #: Sectors of the failing write that still reach the device (a write cut short).
    partial_sectors: int = 0
    #: Keep failing every later operation of the same kind until :meth:`clear`.
    persistent: bool = False
    writes: int = 0
    flushes: int = 0
    reads: int = 0
    bytes_read: int = 0
    injected: int = 0
    fired: list[str] = field(default_factory=list)

    def arm(self, **kinds: int | None) -> None:
        """Fail the given operations (``write_at=``, ``flush_at=``, ``read_at=``) from now on."""
        self.writes = self.flushes = self.reads = 0
        self.fired.clear()
        for name, value in kinds.items():
            setattr(self, name, value)

    def clear(self) -> None:
        """The fault is fixed: no further operation fails."""
        self.write_at = self.flush_at = self.read_at = None

    def _due(self, kind: str, index: int) -> bool:
        target = getattr(self, f"{kind}_at")
        if target is None:
            return False
        return index == target or (self.persistent and index > target)

    def _fire(self, kind: str, code: int) -> OSError:
        self.injected += 1
        self.fired.append(kind)
        return OSError(code, f"injected {errno.errorcode[code]} on {kind}")


class FaultyDevice(BlockDevice):
    """Wraps ``inner`` and fails the operations ``plan`` names."""

    def __init__(self, inner: BlockDevice, plan: FaultPlan) -> None:
        super().__init__(inner.sector_size, inner.sector_count)
        self.inner = inner
        self.plan = plan

    def _read(self, lba: int, count: int) -> bytes:
        plan = self.plan
        index = plan.reads
        plan.reads += 1
        if plan._due("read", index):
            raise plan._fire("read", errno.EIO)
        data = self.inner.read(lba, count)
        plan.bytes_read += len(data)
        return data

    def _write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        plan = self.plan
        index = plan.writes
        plan.writes += 1
        if plan._due("write", index):
            keep = min(plan.partial_sectors, len(data) // self.sector_size)
            if keep:
                self.inner.write(lba, bytes(data[: keep * self.sector_size]))
            raise plan._fire("write", plan.write_errno)
        self.inner.write(lba, data)

    def _flush(self) -> None:
        plan = self.plan
        index = plan.flushes
        plan.flushes += 1
        if plan._due("flush", index):
            raise plan._fire("flush", errno.EIO)
        self.inner.flush()

    def invalidate_cache(self) -> None:
        self.inner.invalidate_cache()

    def _close(self) -> None:
        self.inner.close()


def faulty_opener(open_inner: Callable[[], BlockDevice], plan: FaultPlan):
    """An ``open_device`` for StatefsServer: each call wraps a freshly opened device."""

    def open_device() -> BlockDevice:
        return FaultyDevice(open_inner(), plan)

    return open_device
