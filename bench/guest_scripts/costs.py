"""Guest start-up profile, part 2: the device key and the store's open.

keystored derives an Ed25519 key with pure-Python ecdsa, and statefsd opens the store (replay
plus the damage scan past the journal's end, which reads ``record_limit`` bytes however small
the journal): both are timed here under TCG, the open at the default and at smaller record
limits, to size what a smaller limit would save.
"""

import os
import time

from guest.console import emit

DISK = "/dev/vda"


def device_key():
    started = time.perf_counter()
    import ecdsa

    seconds = time.perf_counter() - started
    emit(f"BENCH: import-ecdsa seconds={seconds:.6f} version={ecdsa.__version__}")
    from guest.keystored.keys import DeviceKey

    for name in ("ed25519-derive", "ed25519-derive-again"):
        started = time.perf_counter()
        key = DeviceKey(os.urandom(32))
        emit(f"BENCH: {name} seconds={time.perf_counter() - started:.6f}")
    started = time.perf_counter()
    key.sign(b"challenge")
    emit(f"BENCH: ed25519-sign seconds={time.perf_counter() - started:.6f}")


def store_open():
    """Open cost of a small store (the contract's) at the default and smaller record limits."""
    from guest.statefs.blockdev import RawBlockDevice
    from guest.statefs.layout import min_record_limit
    from guest.statefs.store import Store

    while not os.path.exists(DISK):
        time.sleep(0.01)
    limits = (
        ("default", None),
        ("1m", 1 << 20),
        ("256k", 256 << 10),
        ("min", min_record_limit(512)),
    )
    for label, limit in limits:
        store = Store.format(RawBlockDevice(DISK), record_limit=limit)
        for i in range(6):
            store.put(f"/state/selftest/k{i}", bytes(64))
            store.sync()
        emit(f"BENCH: record-limit-{label} bytes={store.superblock.record_limit}")
        store.close()
        for _ in range(3):
            started = time.perf_counter()
            Store.open(RawBlockDevice(DISK)).close()
            emit(f"BENCH: store-open-{label} seconds={time.perf_counter() - started:.6f}")


def main():
    device_key()
    store_open()


if __name__ == "__sq_script__":
    main()
