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
``SELFTEST: statefs deny ok``
    a client of another identity (``app``), allowed to connect, was refused (EACCES) reading
    the device key's seed and writing the boot record, the boot record is unchanged, and
    statefsd counted each denial (``guest.selftest.deny``).
``SELFTEST: reboot persist ok`` (boot 2 and later)
    what the previous boot recorded last (its nonce, key fingerprint, bootctl state and a value
    digest) is what this boot finds, before it changes anything.

A failed proof prints ``SELFTEST: <name> FAIL <reason>`` and ends the run. ``sq.fail=<name>``
(the step's name with ``-`` for spaces, e.g. ``sq.fail=statefs-persist``) fails that step on
purpose before it runs: a boot whose failure is known, for testing the harness's failure paths
(a recorded failing boot must replay to the same FAIL line). Each marker is
spelled out in full where it is printed (the step table in :meth:`Selftest.run`), so a marker
in a console log can be searched for in this file.
"""

import errno
import hashlib
import json
import os
from collections.abc import Callable

from guest.console import emit
from guest.keystored.keys import verify
from guest.keystored.service import KeystoreClient
from guest.selftest.deny import check_deny
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
    statefsd: str
    keystored: str
    updated: str

    def __init__(
        self,
        statefsd: str = "/run/statefsd/statefsd.sock",
        keystored: str = "/run/keystored/keystored.sock",
        updated: str = "/run/updated/updated.sock",
    ) -> None:
        self._set(statefsd=statefsd, keystored=keystored, updated=updated)

    @classmethod
    def under(cls, run_dir: str) -> "Sockets":
        """Each service's socket in its runtime directory below ``run_dir``."""
        return cls(
            **{
                name: f"{run_dir}/{name}/{name}.sock"
                for name in ("statefsd", "keystored", "updated")
            }
        )


def expect(condition: bool, reason: str) -> None:
    if not condition:
        raise CheckFailed(reason)


class Selftest:
    """Runs the proofs of one boot. ``restart`` stops and starts every service."""

    def __init__(
        self,
        *,
        boot: int,
        nonce: str,
        restart: Callable[[], None],
        sockets: Sockets | None = None,
        fail_step: str = "",
    ) -> None:
        self.boot = boot
        self.fail_step = fail_step
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
        """All proofs of this boot, in order; False after the first failure.

        Each step: its name (for a FAIL line), the proof, and the marker it prints when it
        passes (None for a step that proves nothing by itself)."""
        steps: list[tuple[str, Callable[[], object], str | None]] = []
        if self.boot >= 2:
            steps.append(("reboot persist", self.check_reboot, "SELFTEST: reboot persist ok"))
        steps += [
            ("statefs put", self.check_put, "SELFTEST: statefs put ok"),
            ("bootctl prepare", self.prepare_bootctl, None),
            ("device key prepare", self.prepare_device_key, None),
            ("statefs deny", self.check_deny, "SELFTEST: statefs deny ok"),
            ("soft restart", self.restart, None),
            ("statefs persist", self.check_persist, "SELFTEST: statefs persist ok"),
            ("bootctl persist", self.check_bootctl, "SELFTEST: bootctl persist ok"),
            ("device key persist", self.check_device_key, "SELFTEST: device key persist ok"),
            ("record boot", self.record_boot, None),
        ]
        for name, step, marker in steps:
            try:
                if name.replace(" ", "-") == self.fail_step:
                    raise CheckFailed("on purpose (sq.fail)")
                step()
            except CheckFailed as exc:
                emit(f"SELFTEST: {name} FAIL {exc}")
                return False
            except (StatefsError, OSError) as exc:
                emit(f"SELFTEST: {name} FAIL {type(exc).__name__}: {exc}")
                return False
            if marker is not None:
                emit(marker)
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

    def check_deny(self) -> None:
        """After bootctl and the device key exist: the unprivileged client is refused both."""
        with self.statefs() as client:
            reason = check_deny(client, self.sockets.statefsd)
        if reason is not None:
            raise CheckFailed(reason)

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
