"""The selftest client: proves the marker contract, one marker per proof.

Every ``ok`` marker follows a read-back that could have failed:

``SELFTEST: statefs put ok``
    keys put through statefsd (a small value, a largest value, a deleted key) read back equal,
    before and after a sync.
``SELFTEST: statefs persist ok``
    after statefsd was stopped and started again (a new process that re-opens the device,
    drops the kernel's buffer cache and replays) the same reads return the same bytes, the
    deleted key is still gone, and again after an in-daemon REOPEN.
``SELFTEST: bootctl persist ok``
    the A/B state after set-active, boot-attempt and mark-successful equals, field for field,
    what a restarted updated loads.
``SELFTEST: device key persist ok``
    the restarted keystored *loaded* (did not create) a key with the same fingerprint, and its
    signature over a fresh challenge verifies under the public key seen before the restart.
``SELFTEST: reboot persist ok`` (boot 2 and later)
    what the previous boot recorded last (its nonce, key fingerprint, bootctl state and a value
    digest) is what this boot finds, before it changes anything.

A failed proof prints ``SELFTEST: <name> FAIL <reason>`` and ends the run.
"""

import errno
import hashlib
import json
import os
from collections.abc import Callable

from guest.console import emit
from guest.keystored.keys import verify
from guest.keystored.service import KeystoreClient
from guest.statefs.errors import StatefsError
from guest.statefs.layout import MAX_VALUE_BYTES
from guest.statefsd.client import StatefsClient
from guest.updated.bootctl import BOOTCTL_KEY, BootControl
from guest.updated.service import BootControlClient
from guest.values import Value

PROBE_KEY = "/state/selftest/probe"
LARGE_KEY = "/state/selftest/large"
DELETED_KEY = "/state/selftest/deleted"
LAST_BOOT_KEY = "/state/selftest/last-boot"


class CheckFailed(Exception):
    """A proof did not hold; the message is the reason printed after FAIL."""


class Sockets(Value):
    """Where the services listen (the VM's defaults; host tests use a temp dir)."""

    __slots__ = ("keystored", "statefsd", "updated")

    def __init__(
        self,
        statefsd: str = "/run/statefsd.sock",
        keystored: str = "/run/keystored.sock",
        updated: str = "/run/updated.sock",
    ) -> None:
        self._set(statefsd=statefsd, keystored=keystored, updated=updated)


def expect(condition: bool, reason: str) -> None:
    if not condition:
        raise CheckFailed(reason)


class Selftest:
    """Runs the proofs of one boot. ``restart`` stops and starts every service."""

    def __init__(
        self, *, boot: int, nonce: str, restart: Callable[[], None], sockets: Sockets | None = None
    ) -> None:
        self.boot = boot
        self.nonce = nonce
        self.restart = restart
        self.sockets = sockets or Sockets()
        self.values: dict[str, bytes] = {}

    # -- clients -----------------------------------------------------------------------------

    def statefs(self) -> StatefsClient:
        return StatefsClient.connect(self.sockets.statefsd, wait=5.0)

    def keystore(self) -> KeystoreClient:
        return KeystoreClient.connect(self.sockets.keystored, wait=5.0)

    def bootctl(self) -> BootControlClient:
        return BootControlClient.connect(self.sockets.updated, wait=5.0)

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> bool:
        """All proofs of this boot, in order; False after the first failure."""
        steps: list[tuple[str, Callable[[], object]]] = []
        if self.boot >= 2:
            steps.append(("reboot persist", self.check_reboot))
        steps += [
            ("statefs put", self.check_put),
            ("bootctl prepare", self.prepare_bootctl),
            ("device key prepare", self.prepare_device_key),
            ("soft restart", self.restart),
            ("statefs persist", self.check_persist),
            ("bootctl persist", self.check_bootctl),
            ("device key persist", self.check_device_key),
            ("record boot", self.record_boot),
        ]
        for name, step in steps:
            try:
                step()
            except CheckFailed as exc:
                emit(f"SELFTEST: {name} FAIL {exc}")
                return False
            except (StatefsError, OSError) as exc:
                emit(f"SELFTEST: {name} FAIL {type(exc).__name__}: {exc}")
                return False
            if name in MARKED:
                emit(f"SELFTEST: {name} ok")
        return True

    # -- statefs -----------------------------------------------------------------------------

    def check_put(self) -> None:
        self.values = {
            PROBE_KEY: f"statefs-qemu probe boot={self.boot} nonce={self.nonce}".encode(),
            LARGE_KEY: os.urandom(MAX_VALUE_BYTES),
        }
        with self.statefs() as client:
            for key, value in self.values.items():
                client.put(key, value)
            client.put(DELETED_KEY, b"short-lived")
            client.delete(DELETED_KEY)
            self._read_back(client, "before sync")
            client.sync()
            self._read_back(client, "after sync")

    def _read_back(self, client: StatefsClient, when: str) -> None:
        for key, value in self.values.items():
            got = client.get(key)
            expect(got == value, f"{key} read back {len(got)} bytes, not the {len(value)} put "
                                 f"({when})")  # fmt: skip
        try:
            client.get(DELETED_KEY)
        except StatefsError as exc:
            expect(exc.errno == errno.ENOENT, f"deleted key gave errno {exc.errno} ({when})")
        else:
            raise CheckFailed(f"{DELETED_KEY} is still there after delete ({when})")

    def check_persist(self) -> None:
        with self.statefs() as client:
            stats = client.stats()
            expect(stats["replay_records"] > 0, "the restarted statefsd replayed no records")
            self._read_back(client, "after restart")
            client.reopen()
            self._read_back(client, "after REOPEN")
            fsck = client.fsck()
            expect(fsck["ok"], f"fsck after restart: {fsck['lines']}")

    # -- bootctl -----------------------------------------------------------------------------

    def prepare_bootctl(self) -> None:
        with self.bootctl() as updated:
            start = updated.state()
            target = "b" if start.current == "a" else "a"
            updated.set_active(target, tries=3)
            attempted = updated.boot_attempt()
            expect(attempted.current == target, f"boot attempt chose {attempted.current}")
            expect(attempted.slots[target].tries_left == 2, "boot attempt did not count a try")
            self.bootctl_expected = updated.mark_successful()
            expect(self.bootctl_expected.slots[target].successful, "mark-successful did not stick")

    def check_bootctl(self) -> None:
        with self.bootctl() as updated:
            loaded = updated.state()
        expect(
            loaded == self.bootctl_expected,
            f"restarted updated loaded {loaded.encode()!r}, expected "
            f"{self.bootctl_expected.encode()!r}",
        )
        with self.statefs() as client:
            stored = BootControl.decode(client.get(BOOTCTL_KEY))
        expect(stored == self.bootctl_expected, "statefsd holds another bootctl record")

    # -- device key --------------------------------------------------------------------------

    def prepare_device_key(self) -> None:
        with self.keystore() as keystore:
            info = keystore.info()
            challenge = b"before restart " + os.urandom(16)
            signature = keystore.sign(challenge)
        wanted = "created" if self.boot == 1 else "loaded"
        expect(info["origin"] == wanted, f"keystored says {info['origin']}, expected {wanted}")
        self.public = bytes.fromhex(info["public"])
        self.fingerprint = info["fingerprint"]
        expect(verify(self.public, challenge, signature), "signature does not verify")

    def check_device_key(self) -> None:
        with self.keystore() as keystore:
            info = keystore.info()
            challenge = b"after restart " + os.urandom(16)
            signature = keystore.sign(challenge)
        expect(info["origin"] == "loaded", f"restarted keystored says {info['origin']}")
        expect(
            info["fingerprint"] == self.fingerprint,
            f"fingerprint {info['fingerprint']} after restart, {self.fingerprint} before",
        )
        expect(
            verify(self.public, challenge, signature),
            "the restarted key's signature does not verify under the original public key",
        )

    # -- reboot ------------------------------------------------------------------------------

    def record_boot(self) -> None:
        record = {
            "boot": self.boot,
            "nonce": self.nonce,
            "fingerprint": self.fingerprint,
            "bootctl": self.bootctl_expected.to_json(),
            "large_sha256": hashlib.sha256(self.values[LARGE_KEY]).hexdigest(),
        }
        with self.statefs() as client:
            client.put(LAST_BOOT_KEY, json.dumps(record, sort_keys=True).encode(), sync=True)

    def check_reboot(self) -> None:
        with self.statefs() as client:
            try:
                record = json.loads(client.get(LAST_BOOT_KEY))
            except StatefsError as exc:
                raise CheckFailed(f"no record from boot {self.boot - 1}: {exc}") from None
            large = client.get(LARGE_KEY)
        expect(record["boot"] == self.boot - 1, f"last record is from boot {record['boot']}")
        expect(record["nonce"] == self.nonce, f"nonce {record['nonce']} != {self.nonce}")
        expect(
            hashlib.sha256(large).hexdigest() == record["large_sha256"],
            "the largest value differs from what the previous boot wrote",
        )
        with self.keystore() as keystore:
            info = keystore.info()
        expect(info["origin"] == "loaded", f"keystored {info['origin']} a key on reboot")
        expect(info["fingerprint"] == record["fingerprint"], "device key changed across reboot")
        with self.bootctl() as updated:
            state = updated.state()
        expect(state.to_json() == record["bootctl"], "bootctl state changed across reboot")


#: Steps that end in a contract marker when they pass.
MARKED = {
    "reboot persist",
    "statefs put",
    "statefs persist",
    "bootctl persist",
    "device key persist",
}
