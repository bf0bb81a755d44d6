"""The store's tunables: what a caller may choose without changing the on-disk format."""

import errno

from guest.statefs.errors import StatefsError
from guest.values import Value


class StoreConfig(Value):
    """Tunables that do not change the on-disk format.

    ``compact_min_bytes`` and ``compact_garbage_ratio``: ``sync()`` compacts instead of
    appending when the journal would exceed both ``compact_min_bytes`` and
    ``compact_garbage_ratio`` times the size of a fresh snapshot. That keeps replay time
    proportional to the live set, not to the history. It also compacts when the next record
    does not fit in the region at all. ``read_only`` opens without ever writing.
    """

    __slots__ = ("compact_garbage_ratio", "compact_min_bytes", "read_only")
    compact_min_bytes: int
    compact_garbage_ratio: float
    read_only: bool

    def __init__(
        self,
        compact_min_bytes: int = 1 << 20,
        compact_garbage_ratio: float = 4.0,
        read_only: bool = False,
    ) -> None:
        if compact_min_bytes < 0 or compact_garbage_ratio < 1.0:
            raise StatefsError(errno.EINVAL, "compaction thresholds out of range")
        self._set(
            compact_min_bytes=compact_min_bytes,
            compact_garbage_ratio=compact_garbage_ratio,
            read_only=read_only,
        )
