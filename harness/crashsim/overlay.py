"""A block device over a shared base image and a small dict of changed sectors.

Why: a crash state is a base image (the durable contents at a flush) plus the few sectors a
crash changed. Recovering thousands of them must not copy a whole device per state.
"""

from guest.statefs.blockdev import BlockDevice


class OverlayDevice(BlockDevice):
    """A block device reading a shared base image through a small dict of changed sectors.

    Recovering thousands of crash states of a 1 MiB device this way copies nothing but what
    replay reads; writes (the post-recovery proof) go to the overlay, and flush is a no-op, so a
    second open on the same device is a crash-free reopen.
    """

    def __init__(self, base: bytes, sector_size: int, overlay: dict[int, bytes]):
        super().__init__(sector_size, len(base) // sector_size)
        self._base = base
        self._overlay = dict(overlay)

    def _read(self, lba: int, count: int) -> bytes:
        ss = self.sector_size
        hits = (
            [key for key in self._overlay if lba <= key < lba + count]
            if len(self._overlay) < count
            else [key for key in range(lba, lba + count) if key in self._overlay]
        )
        if not hits:
            return self._base[lba * ss : (lba + count) * ss]
        out = bytearray(self._base[lba * ss : (lba + count) * ss])
        for key in hits:
            start = (key - lba) * ss
            out[start : start + ss] = self._overlay[key]
        return bytes(out)

    def _write(self, lba: int, data) -> None:
        ss = self.sector_size
        data = bytes(data)
        for index in range(len(data) // ss):
            self._overlay[lba + index] = data[index * ss : (index + 1) * ss]

    def _flush(self) -> None:
        return None
