"""``sq.mode=contract``: probe the disk, start the services, run the selftest.

Parameters (kernel command line): ``sq.boot=N`` (1 for a fresh disk, 2.. for a reboot on the
same disk), ``sq.nonce=<hex>`` (the same in every boot of a run), ``sq.disk=/dev/vda``,
``sq.format=force`` (statefsd may format a disk that is neither blank nor a store; without it
statefsd refuses such a disk with ``statefsd: fatal EMEDIUMTYPE ...``), ``sq.fail=<step>`` (the
selftest fails that step on purpose, see ``guest.selftest.checks``).
"""

import os
import time

from guest.console import emit
from guest.identities import KEYSTORED, STATEFSD, UPDATED
from guest.init import runtime
from guest.init.supervisor import Supervisor
from guest.keystored.keys import preload as preload_ed25519
from guest.keystored.service import run_keystored
from guest.selftest.checks import Selftest, Sockets
from guest.statefs.blockdev import RawBlockDevice
from guest.statefsd.server import run_daemon
from guest.updated.service import run_updated

DEVICE_WAIT_SECONDS = 10.0


class ContractParams:
    def __init__(self, params: dict[str, str]) -> None:
        boot = params.get("sq.boot", "1")
        if not boot.isdigit() or int(boot) < 1:
            raise ValueError(f"sq.boot must be a positive integer, got {boot!r}")
        self.boot = int(boot)
        self.nonce = params.get("sq.nonce", "")
        if not 8 <= len(self.nonce) <= 64 or self.nonce.strip("0123456789abcdef"):
            raise ValueError(f"sq.nonce must be 8-64 lowercase hex digits, got {self.nonce!r}")
        self.disk = params.get("sq.disk", "/dev/vda")
        fmt = params.get("sq.format", "")
        if fmt not in ("", "force"):
            raise ValueError(f"sq.format must be 'force' or absent, got {fmt!r}")
        self.force_format = fmt == "force"
        self.fail_step = params.get("sq.fail", "")


def wait_for(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise FileNotFoundError(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.01)


def probe_disk(path: str) -> None:
    """Open the disk as the raw block device and report what the kernel says it is."""
    wait_for(path, DEVICE_WAIT_SECONDS)
    with RawBlockDevice(path) as dev:
        emit(f"blk: virtio-blk up (ss={dev.sector_size} nsec={dev.sector_count})")


class Services:
    """statefsd, keystored and updated, started in dependency order, each as its own identity
    (``runtime.prepare`` must have handed them the disk and their runtime directories)."""

    def __init__(
        self, supervisor: Supervisor, disk: str, sockets: Sockets, *, force_format: bool = False
    ) -> None:
        self.supervisor = supervisor
        self.order = [
            ("statefsd", STATEFSD, lambda ready: run_daemon(disk, sockets.statefsd,
                                                            on_ready=ready,
                                                            force_format=force_format)),
            ("keystored", KEYSTORED, lambda ready: run_keystored(sockets.keystored,
                                                                 sockets.statefsd, on_ready=ready)),
            ("updated", UPDATED, lambda ready: run_updated(sockets.updated, sockets.statefsd,
                                                           on_ready=ready)),
        ]  # fmt: skip

    def start_all(self) -> None:
        for name, identity, main in self.order:
            if name == "keystored":
                # Imported here, once, in init: every keystored start (two per boot) is then a
                # fork that skips it, and statefsd is already up while it loads.
                preload_ed25519()
            self.supervisor.start(name, main, identity=identity)

    def stop_all(self) -> None:
        for name, _, _ in reversed(self.order):
            code = self.supervisor.stop(name)
            if code:
                raise RuntimeError(f"{name} stopped with exit code {code}")

    def restart(self) -> None:
        emit("init: soft restart: stopping updated, keystored, statefsd")
        self.stop_all()
        self.start_all()


def run_contract(raw_params: dict[str, str]) -> None:
    params = ContractParams(raw_params)
    probe_disk(params.disk)
    sockets = runtime.prepare(params.disk)
    supervisor = Supervisor()
    services = Services(supervisor, params.disk, sockets, force_format=params.force_format)
    try:
        services.start_all()
        passed = Selftest(
            boot=params.boot,
            nonce=params.nonce,
            restart=services.restart,
            sockets=sockets,
            fail_step=params.fail_step,
        ).run()
        supervisor.check()
    finally:
        supervisor.stop_all()
    emit(f"SELFTEST: boot {params.boot} {'complete' if passed else 'stopped after a failure'}")


def run_powercut_boot(raw_params: dict[str, str]) -> None:
    """``sq.mode=powercut``: statefsd only, then check-and-write until the power is cut."""
    from guest.selftest.powercut import limit_requests, run_powercut

    params = ContractParams(raw_params)
    probe_disk(params.disk)
    limit_requests(raw_params, params.disk)
    sockets = runtime.prepare(params.disk)
    supervisor = Supervisor()
    try:
        supervisor.start(
            "statefsd",
            lambda ready: run_daemon(
                params.disk, sockets.statefsd, on_ready=ready, force_format=params.force_format
            ),
            identity=STATEFSD,
        )
        run_powercut(raw_params, sockets.statefsd)
        supervisor.check()
    finally:
        supervisor.stop_all()
