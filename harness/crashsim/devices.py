"""Block devices that know what a power cut would leave behind, and log what they were asked.

Writes since the last completed flush are volatile: a crash may persist any subset of them, in
any order, and may tear a write inside a sector. :class:`CrashDevice` records them per sector so
tests can build every such crash state (or a seeded sample) and recover a store from each one.
It can also cut the power itself after a number of device operations, raising
:class:`PowerCut` out of whatever store call is running. :class:`RecordingDevice` also logs
every write and completed flush as a :class:`~harness.crashsim.recording.Recording`, the input
of crash-state generation.
"""

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from guest.statefs.blockdev import BlockDevice, MemoryBlockDevice
from harness.crashsim.recording import UNFORMATTED, Model, Recording


class PowerCut(Exception):
    """Raised by a CrashDevice when its scheduled power cut happens."""


@dataclass(frozen=True)
class SectorWrite:
    """One sector of an unflushed write: its LBA and the new contents."""

    lba: int
    data: bytes


class CrashDevice(BlockDevice):
    """Memory device with a durable image and a list of volatile sector writes."""

    def __init__(self, sector_size: int = 512, sector_count: int = 2048, *, image: bytes = b""):
        super().__init__(sector_size, sector_count)
        size = sector_size * sector_count
        self.durable = bytearray(image) if image else bytearray(size)
        if len(self.durable) != size:
            raise ValueError("image size does not match the device")
        self.current = bytearray(self.durable)
        self.volatile: list[SectorWrite] = []
        self.cut_after: int | None = None
        self.writes = 0
        self.flushes = 0

    def schedule_power_cut(self, after_ops: int) -> None:
        """Cut the power before device operation number ``after_ops`` (0 = the next one)."""
        self.cut_after = after_ops

    def _tick(self) -> None:
        if self.cut_after is not None:
            if self.cut_after == 0:
                self.cut_after = None
                raise PowerCut("power cut")
            self.cut_after -= 1

    def _read(self, lba: int, count: int) -> bytes:
        start = lba * self.sector_size
        return bytes(self.current[start : start + count * self.sector_size])

    def _write(self, lba: int, data) -> None:
        self._tick()
        ss = self.sector_size
        data = bytes(data)
        self.current[lba * ss : lba * ss + len(data)] = data
        for index in range(len(data) // ss):
            self.volatile.append(SectorWrite(lba + index, data[index * ss : (index + 1) * ss]))
        self.writes += 1

    def _flush(self) -> None:
        self._tick()
        for write in self.volatile:
            start = write.lba * self.sector_size
            self.durable[start : start + self.sector_size] = write.data
        self.volatile.clear()
        self.flushes += 1

    # -- crash states ------------------------------------------------------------------------

    def image_with(
        self,
        kept: tuple[int, ...],
        torn: tuple[int, int] | None = None,
        *,
        new_head: bool = True,
    ) -> bytes:
        """The durable image plus the volatile writes whose indexes are in ``kept`` (applied in
        issue order); ``torn=(index, byte)`` persists only the first ``byte`` bytes of that
        write's sector (the rest keeps what it held), or with ``new_head=False`` only the bytes
        from ``byte`` on (the sector's first bytes keep what they held)."""
        image = bytearray(self.durable)
        ss = self.sector_size
        for index in kept:
            write = self.volatile[index]
            start = write.lba * ss
            if torn is not None and torn[0] == index:
                if new_head:
                    image[start : start + torn[1]] = write.data[: torn[1]]
                else:
                    image[start + torn[1] : start + ss] = write.data[torn[1] :]
            else:
                image[start : start + ss] = write.data
        return bytes(image)

    def crash_states(
        self, *, exhaustive_up_to: int = 10, samples: int = 256, seed: int = 0
    ) -> Iterator[tuple[str, bytes]]:
        """Every crash state of the volatile writes, or a seeded sample when there are many.

        Yields ``(label, image)``: each subset of the volatile sector writes (exhaustive up to
        ``exhaustive_up_to`` writes), each prefix, and each write torn in the middle of its
        sector on top of the writes before it.
        """
        count = len(self.volatile)
        seen: set[tuple[int, ...]] = set()

        def emit(kept: tuple[int, ...], label: str) -> Iterator[tuple[str, bytes]]:
            if kept not in seen:
                seen.add(kept)
                yield label, self.image_with(kept)

        for size in range(count + 1):
            yield from emit(tuple(range(size)), f"prefix {size}/{count}")
        if count <= exhaustive_up_to:
            for size in range(count + 1):
                for kept in itertools.combinations(range(count), size):
                    yield from emit(kept, f"subset {kept}")
        else:
            rng = random.Random(seed)
            for _ in range(samples):
                kept = tuple(i for i in range(count) if rng.random() < 0.5)
                yield from emit(kept, f"sampled subset {kept}")
        for index in range(count):
            for cut in (self.sector_size // 2, 8):
                yield (
                    f"prefix {index} + write {index} torn at byte {cut}",
                    self.image_with(tuple(range(index + 1)), torn=(index, cut)),
                )

    def fork(self, image: bytes) -> MemoryBlockDevice:
        """A plain memory device holding ``image`` (what a reboot would find)."""
        return MemoryBlockDevice.from_image(image, self.sector_size)


class RecordingDevice(CrashDevice):
    """A :class:`CrashDevice` that also logs every write (per sector) and completed flush.

    Built on CrashDevice so a workload can still cut the power mid-operation
    (``schedule_power_cut``) and build the image it left (``image_with``); a write or flush
    the cut prevented is not logged.
    """

    def __init__(
        self,
        sector_size: int = 512,
        sector_count: int = 2048,
        *,
        image: bytes = b"",
        initial_state: Model = UNFORMATTED,
        name: str = "",
    ):
        super().__init__(sector_size, sector_count, image=image)
        self.recording = Recording(sector_size, sector_count, bytes(self.durable), name=name)
        self.recording.add_state(initial_state)

    def _write(self, lba: int, data) -> None:
        super()._write(lba, data)  # a cut write raises before it is logged
        self.recording.write(lba, data)

    def _flush(self) -> None:
        super()._flush()
        self.recording.flush()

    def begin(self, target: Model, what: str) -> None:
        """Mark the start of a store operation that commits ``target`` if it completes."""
        self.recording.begin(self.recording.add_state(target), what)

    def end(self, committed: Model) -> None:
        """Mark the end of the operation: ``committed`` is the state now durable."""
        self.recording.end(self.recording.add_state(committed))
