"""The device identity key: an Ed25519 key created once and kept in ``/state/keystore/``.

Ed25519 comes from python-ecdsa (Debian's python3-ecdsa, pure Python): the guest needs no
OpenSSL or libffi, and the key's entropy comes from the kernel (``os.urandom`` is
``getrandom(2)``, whose pool the VM's virtio-rng device seeds).

Stored as two keys, written together in one atomic, synced batch:

``/state/keystore/device/seed``
    the 32-byte Ed25519 private seed (never printed, logged or sent over the socket)
``/state/keystore/device/meta``
    JSON: format version, algorithm, public key and fingerprint (SHA-256 of the public key)

Loading re-derives the public key from the seed and compares it with the stored one. A key that
exists but cannot be read back whole (one half missing, a mismatch, a malformed record) is an
error: keystored never silently replaces an existing identity.
"""

import errno
import hashlib
import json
import os

from guest.statefs.errors import StatefsError

SEED_KEY = "/state/keystore/device/seed"
META_KEY = "/state/keystore/device/meta"
ALGORITHM = "ed25519"
META_VERSION = 1
SEED_BYTES = 32


def preload() -> None:
    """Import the Ed25519 implementation now. init calls this before forking keystored, so
    every keystored start (two per boot) skips an import that costs ~0.25 s under TCG."""
    import ecdsa.eddsa  # noqa: F401 - imported for its side effect of being loaded


class DeviceKeyError(StatefsError):
    """The stored device key is unreadable or inconsistent (EBADMSG)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EBADMSG, message)


class DeviceKey:
    """An Ed25519 key pair; ``repr`` and ``str`` never show the private seed."""

    def __init__(self, seed: bytes) -> None:
        from ecdsa import Ed25519, SigningKey

        if len(seed) != SEED_BYTES:
            raise DeviceKeyError(f"device key seed is {len(seed)} bytes, expected {SEED_BYTES}")
        self._seed = bytes(seed)
        self._signing = SigningKey.from_string(self._seed, curve=Ed25519)
        self.public = self._signing.get_verifying_key().to_string()
        self.fingerprint = hashlib.sha256(self.public).hexdigest()

    @classmethod
    def generate(cls) -> "DeviceKey":
        return cls(os.urandom(SEED_BYTES))

    def sign(self, message: bytes) -> bytes:
        return self._signing.sign(message)

    def meta(self) -> bytes:
        record = {
            "version": META_VERSION,
            "algorithm": ALGORITHM,
            "public": self.public.hex(),
            "fingerprint": self.fingerprint,
        }
        return json.dumps(record, sort_keys=True).encode("utf-8")

    def seed_for_storage(self) -> bytes:
        return self._seed

    def __repr__(self) -> str:
        return f"DeviceKey(fingerprint={self.fingerprint})"


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is ``public``'s Ed25519 signature of ``message``."""
    from ecdsa import BadSignatureError, Ed25519, VerifyingKey

    try:
        return VerifyingKey.from_string(public, curve=Ed25519).verify(signature, message)
    except (BadSignatureError, ValueError, AssertionError):
        return False


def _read(client, key: str) -> bytes | None:
    try:
        return client.get(key)
    except StatefsError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def load_or_create(client) -> tuple[DeviceKey, str]:
    """Load the device key through a statefsd client, creating it on first use.

    Returns ``(key, "loaded" | "created")``; raises :class:`DeviceKeyError` when a key exists but
    is not whole and consistent.
    """
    seed = _read(client, SEED_KEY)
    meta = _read(client, META_KEY)
    if seed is None and meta is None:
        key = DeviceKey.generate()
        client.batch([(SEED_KEY, key.seed_for_storage()), (META_KEY, key.meta())])
        return key, "created"
    if seed is None or meta is None:
        missing = SEED_KEY if seed is None else META_KEY
        raise DeviceKeyError(f"device key is incomplete: {missing} is missing")
    try:
        record = json.loads(meta)
        public = bytes.fromhex(record["public"])
        fingerprint = record["fingerprint"]
        algorithm = record["algorithm"]
        version = record["version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DeviceKeyError(f"device key metadata is malformed: {exc!r}") from None
    if version != META_VERSION or algorithm != ALGORITHM:
        raise DeviceKeyError(f"device key is {algorithm!r} version {version!r}, not understood")
    key = DeviceKey(seed)
    if key.public != public or key.fingerprint != fingerprint:
        raise DeviceKeyError("device key seed does not match its stored public key")
    return key, "loaded"
