"""statefs: a journaled key/value store over a raw block device, the substrate of ``/state``.

Public API::

    from guest.statefs import Store, MemoryBlockDevice, FileBlockDevice, RawBlockDevice
    store, formatted = Store.open_or_format(FileBlockDevice("state.img"))
    store.put("/state/boot/active", b"A")
    store.sync()                      # commit point: durable after it returns

Errors are :class:`StatefsError` (an ``OSError`` with an errno). The on-disk format is in
``guest.statefs.layout`` and ``docs/storage/statefs.md``.
"""

from guest.statefs.blockdev import (
    BlockDevice,
    FileBlockDevice,
    MemoryBlockDevice,
    RawBlockDevice,
    open_block_device,
)
from guest.statefs.errors import CorruptionError, StatefsError, UnformattedError
from guest.statefs.layout import MAX_VALUE_BYTES
from guest.statefs.paths import MAX_KEY_BYTES, MAX_NAME_BYTES, normalize_key, normalize_prefix
from guest.statefs.store import Store, StoreConfig


def __getattr__(name: str):
    """``check_device`` and ``FsckReport`` load on first use: the boot path never needs them."""
    if name in ("check_device", "FsckReport"):
        from guest.statefs import fsck

        return getattr(fsck, name)
    raise AttributeError(f"module 'guest.statefs' has no attribute {name!r}")


__all__ = [
    "MAX_KEY_BYTES",
    "MAX_NAME_BYTES",
    "MAX_VALUE_BYTES",
    "BlockDevice",
    "CorruptionError",
    "FileBlockDevice",
    "FsckReport",
    "MemoryBlockDevice",
    "RawBlockDevice",
    "StatefsError",
    "Store",
    "StoreConfig",
    "UnformattedError",
    "check_device",
    "normalize_key",
    "normalize_prefix",
    "open_block_device",
]
