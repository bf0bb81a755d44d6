"""Deterministic stores on memory devices, shared by the store tests."""

from guest.statefs import MemoryBlockDevice, Store, StoreConfig

VOLUME_ID = 0x5EED_0000_CAFE_F00D
EPOCH = 7


def new_store(sectors: int = 4096, sector_size: int = 512, **config) -> Store:
    """A freshly formatted store with a fixed volume id and epoch (bytes are reproducible)."""
    dev = MemoryBlockDevice(sector_size, sectors)
    return Store.format(dev, StoreConfig(**config), volume_id=VOLUME_ID, epoch=EPOCH)


def crash_and_reopen(store: Store, **config) -> Store:
    """What a power cut leaves: the device bytes as they are, no close, no sync."""
    image = bytes(store._dev.data)
    dev = MemoryBlockDevice.from_image(image, store._dev.sector_size)
    return Store.open(dev, StoreConfig(**config))
