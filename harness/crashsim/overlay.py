"""A block device over a shared base image and a small dict of changed sectors.

Why: a crash state is a base image (the durable contents at a flush) plus the few sectors a
crash changed. Recovering thousands of them must not copy a whole device per state.
"""

from bisect import bisect_left

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
        self._keys = sorted(self._overlay)  # for range look-ups: replay reads whole regions
        #: Sector writes since construction (a recovery that wrote nothing changed nothing).
        self.writes = 0

    def _read(self, lba: int, count: int) -> bytes:
        ss = self.sector_size
        keys = self._keys
        first = bisect_left(keys, lba)
        last = bisect_left(keys, lba + count, first)
        base = self._base
        if first == last:
            return base[lba * ss : (lba + count) * ss]
        # One pass: base runs between the changed sectors, joined (replay reads whole
        # regions, so this runs on hundreds of kilobytes per crash state).
        overlay = self._overlay
        pieces = []
        position = lba * ss
        for key in keys[first:last]:
            start = key * ss
            if start > position:
                pieces.append(base[position:start])
            pieces.append(overlay[key])
            position = start + ss
        pieces.append(base[position : (lba + count) * ss])
        return b"".join(pieces)

    def _write(self, lba: int, data) -> None:
        ss = self.sector_size
        data = bytes(data)
        count = len(data) // ss
        for index in range(count):
            self._overlay[lba + index] = data[index * ss : (index + 1) * ss]
        self._keys = sorted(self._overlay)
        self.writes += count

    def _flush(self) -> None:
        return None
