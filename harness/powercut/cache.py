"""A disk with a volatile write-back cache, as the nbdkit plugin serves it to the VM.

Real disks acknowledge a write once it is in their cache; only a flush (or a FUA write) makes
it durable. This class gives the VM exactly that contract, with the cache kept where the
harness can see it after a power cut:

* a write goes into an in-memory overlay (reads see it at once) and is appended to the pending
  journal (:mod:`harness.powercut.journal`) before it is acknowledged; the backing file is not
  touched;
* a flush saves an undo record of the bytes it will overwrite (whole, before anything else),
  applies the pending writes to the backing file in order, fdatasyncs it, then commits by
  replacing the journal with an empty one of the next generation, and deletes the undo record.

So at any instant the backing file plus the two files say precisely what is durable and what
is still "in the cache": if the server is killed mid-flush, the undo record rolls the backing
file back to the last committed flush and the journal still lists every pending write, whose
fate :mod:`harness.powercut.fates` then decides.

Standard library only (and :mod:`harness.powercut.journal`): nbdkit's embedded Python runs it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from harness.powercut.errors import PowerCutError, UnresolvedCache
from harness.powercut.journal import (
    JOURNAL_NAME,
    UNDO_NAME,
    Extent,
    encode_journal_header,
    encode_record,
    encode_undo,
    leftovers,
    replace_whole,
    write_all,
)

log = logging.getLogger(__name__)

#: Cached bytes at which the cache writes back by itself, as a real disk's cache does when it
#: fills up. The campaign's disks are a few MiB, so in practice only a flush writes back.
CACHE_LIMIT_BYTES = 64 * 1024 * 1024

#: The steps of a flush, in order, for :class:`WriteBackCache`'s ``checkpoint`` hook
#: (``apply:<i>`` after the i-th pending write reached the backing file).
FLUSH_STEPS = ("begin", "undo-saved", "apply:<i>", "synced", "committed", "done")

Checkpoint = Callable[[str], None]


def require_resolved(state_dir: Path) -> None:
    """Raise :class:`UnresolvedCache` if a previous cut's files are still in ``state_dir``."""
    found = leftovers(state_dir)
    if found:
        names = ", ".join(path.name for path in found)
        raise UnresolvedCache(
            f"{state_dir} holds {names} from an earlier run: resolve the power cut first "
            f"(harness.powercut.fates.resolve), or the pending writes' fate is decided by accident",
            paths=tuple(str(path) for path in found),
        )


def _no_checkpoint(_step: str) -> None:
    return None


class WriteBackCache:
    """The plugin's disk: ``read``/``write``/``flush`` over ``backing`` (see module docstring).

    Args:
        backing: the raw disk image (its size is the disk's size).
        state_dir: where the journal and the undo record live; must hold neither.
        checkpoint: called with each step name of :data:`FLUSH_STEPS`; a test raises there to
            stop a flush where a SIGKILL could.
        cache_limit: cached bytes that trigger a write-back without a flush.
    """

    def __init__(
        self,
        backing: Path,
        state_dir: Path,
        *,
        checkpoint: Checkpoint = _no_checkpoint,
        cache_limit: int = CACHE_LIMIT_BYTES,
    ) -> None:
        require_resolved(state_dir)
        self.backing = Path(backing)
        self.state_dir = Path(state_dir)
        self.journal_path = self.state_dir / JOURNAL_NAME
        self.undo_path = self.state_dir / UNDO_NAME
        self._checkpoint = checkpoint
        self.cache_limit = cache_limit
        self.generation = 1
        self.pending: list[Extent] = []
        self.pending_bytes = 0
        self.flushes = 0
        self._backing_fd = os.open(self.backing, os.O_RDWR)
        self.size = os.fstat(self._backing_fd).st_size
        replace_whole(self.journal_path, encode_journal_header(self.generation))
        self._journal_fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND)

    # -- requests ---------------------------------------------------------------------------
    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise PowerCutError(
                f"request [{offset}, {offset + length}) is outside the {self.size}-byte disk"
            )

    def read(self, offset: int, length: int) -> bytes:
        """The disk as the guest sees it: the backing file with the pending writes on top."""
        self._check_range(offset, length)
        buffer = bytearray(os.pread(self._backing_fd, length, offset))
        buffer.extend(bytes(length - len(buffer)))
        end = offset + length
        for write in self.pending:
            if write.end <= offset or write.offset >= end:
                continue
            lo, hi = max(offset, write.offset), min(end, write.end)
            buffer[lo - offset : hi - offset] = write.data[lo - write.offset : hi - write.offset]
        return bytes(buffer)

    def write(self, offset: int, data: bytes) -> None:
        """Accept a write into the cache: journaled first, then visible to reads."""
        self._check_range(offset, len(data))
        extent = Extent(offset, bytes(data))
        write_all(self._journal_fd, encode_record(extent))
        self.pending.append(extent)
        self.pending_bytes += len(extent.data)
        if self.pending_bytes > self.cache_limit:
            log.debug("cache holds %d bytes: writing back", self.pending_bytes)
            self.flush()

    def flush(self) -> int:
        """Make every pending write durable (the protocol is in the module docstring);
        returns how many writes it wrote back."""
        if not self.pending:
            return 0
        step = self._checkpoint
        step("begin")
        old = [
            Extent(w.offset, os.pread(self._backing_fd, len(w.data), w.offset))
            for w in self.pending
        ]
        replace_whole(self.undo_path, encode_undo(self.generation, old))
        step("undo-saved")
        for index, write in enumerate(self.pending):
            write_all(self._backing_fd, write.data, write.offset)
            step(f"apply:{index}")
        os.fdatasync(self._backing_fd)
        step("synced")
        # The commit point: an empty journal of the next generation replaces the full one.
        replace_whole(self.journal_path, encode_journal_header(self.generation + 1))
        self.generation += 1
        os.close(self._journal_fd)
        self._journal_fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND)
        step("committed")
        os.unlink(self.undo_path)
        count = len(self.pending)
        self.pending = []
        self.pending_bytes = 0
        self.flushes += 1
        step("done")
        return count

    def close(self) -> None:
        """Release the files. Not a flush: pending writes stay in the journal for the offline
        resolution, as a disk's cache content stays undecided when its power goes."""
        for fd in (self._journal_fd, self._backing_fd):
            if fd >= 0:
                os.close(fd)
        self._journal_fd = self._backing_fd = -1
