"""Guest-side throughput through statefsd's socket, as a guest service sees it.

statefsd is started as PID 1 starts it (forked, on /dev/vda) and driven by one client:
durable puts (``put`` with the SYNC flag: one round trip, one commit), batched puts (puts, then
one SYNC), gets, and one BATCH frame holding every put. The operation count comes from the
kernel command line (``sq.bench_ops=N``).
"""

import os
import time

from guest.console import emit
from guest.init.pid1 import read_kernel_params
from guest.init.supervisor import Supervisor
from guest.statefsd.client import StatefsClient
from guest.statefsd.server import run_daemon

DISK = "/dev/vda"
SOCKET = "/run/bench-statefsd.sock"
VALUE = bytes(range(256))


def timed(name, count, action):
    started = time.perf_counter()
    action()
    emit(f"BENCH: {name} ops={count} seconds={time.perf_counter() - started:.6f}")


def through_statefsd(keys):
    supervisor = Supervisor()
    supervisor.start("statefsd", lambda ready: run_daemon(DISK, SOCKET, on_ready=ready))
    client = StatefsClient.connect(SOCKET, wait=5.0)

    def durable():
        for key in keys:
            client.put(key, VALUE, sync=True)

    def batched():
        for key in keys:
            client.put(key, VALUE[::-1])
        client.sync()

    def gets():
        for key in keys:
            client.get(key)

    timed("statefsd-durable", len(keys), durable)
    timed("statefsd-batched", len(keys), batched)
    timed("statefsd-get", len(keys), gets)
    timed("statefsd-batch-frame", len(keys), lambda: client.batch([(k, VALUE) for k in keys]))
    client.close()
    supervisor.stop_all()


def main():
    count = int(read_kernel_params().get("sq.bench_ops", "300"))
    while not os.path.exists(DISK):
        time.sleep(0.01)
    through_statefsd([f"/state/bench/{i:051d}" for i in range(count)])


if __name__ == "__sq_script__":
    main()
