"""Guest-side durable writes below statefsd: the raw disk, then statefs in this process.

``raw`` is ``pwrite`` 4 KiB + ``fdatasync`` on /dev/vda, the physical limit the guest sees;
``store`` is statefs in-process on the same disk, so the report can tell what the store adds to
the disk and what statefsd's socket adds to the store (``statefsd.py``). The operation count
comes from the kernel command line (``sq.bench_ops=N``).
"""

import os
import time

from guest.console import emit
from guest.init.pid1 import read_kernel_params
from guest.statefs.blockdev import RawBlockDevice
from guest.statefs.store import Store

DISK = "/dev/vda"
VALUE = bytes(range(256))


def timed(name, count, action):
    started = time.perf_counter()
    action()
    emit(f"BENCH: {name} ops={count} seconds={time.perf_counter() - started:.6f}")


def raw_disk(count):
    fd = os.open(DISK, os.O_RDWR)
    block = bytes(4096)

    def loop():
        for i in range(count):
            os.pwrite(fd, block, i * 4096)
            os.fdatasync(fd)

    timed("raw-4096", count, loop)
    os.close(fd)


def in_process(keys):
    store = Store.format(RawBlockDevice(DISK))

    def durable():
        for key in keys:
            store.put(key, VALUE)
            store.sync()

    def batched():
        for key in keys:
            store.put(key, VALUE[::-1])
        store.sync()

    def gets():
        for key in keys:
            store.get(key)

    timed("store-durable", len(keys), durable)
    timed("store-batched", len(keys), batched)
    timed("store-get", len(keys), gets)
    store.close()
    timed("store-open", 1, lambda: Store.open(RawBlockDevice(DISK)).close())


def main():
    count = int(read_kernel_params().get("sq.bench_ops", "300"))
    while not os.path.exists(DISK):
        time.sleep(0.01)
    raw_disk(count)
    in_process([f"/state/bench/{i:051d}" for i in range(count)])


if __name__ == "__sq_script__":
    main()
