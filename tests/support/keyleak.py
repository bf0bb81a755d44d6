"""Looking for the device key's private seed where it must never be: console, logs, replies.

The seed is read from the disk through a :class:`~guest.statefs.Store` (the test knows what
to look for), then searched for in every form a careless line of code could print it in: raw
bytes, hex (either case), base64 (standard and URL-safe, with or without padding), Python's
``bytes`` repr, and any 16-byte window of it in raw or hex (half a seed is still a leak).
"""

from __future__ import annotations

import base64
import os

from guest.keystored.keys import SEED_KEY
from guest.statefs import FileBlockDevice, Store, StoreConfig

#: Shortest run of the seed, in bytes, that counts as a leak.
WINDOW = 16


def read_seed(disk: str | os.PathLike[str]) -> bytes:
    """The device key seed stored on ``disk`` (a file-backed statefs image), read-only."""
    with FileBlockDevice(disk) as dev:
        store = Store.open(dev, StoreConfig(read_only=True))
        try:
            return store.get(SEED_KEY)
        finally:
            store.close()


def seed_forms(seed: bytes) -> dict[str, bytes]:
    """``{form name: bytes to search for}``; text forms are ASCII."""
    forms = {
        "raw": seed,
        "hex": seed.hex().encode(),
        "HEX": seed.hex().upper().encode(),
        "base64": base64.b64encode(seed),
        "base64 unpadded": base64.b64encode(seed).rstrip(b"="),
        "urlsafe base64": base64.urlsafe_b64encode(seed).rstrip(b"="),
        "bytes repr": repr(seed)[2:-1].encode(),
    }
    for start in range(0, len(seed) - WINDOW + 1):
        window = seed[start : start + WINDOW]
        forms[f"raw bytes {start}..{start + WINDOW}"] = window
        forms[f"hex of bytes {start}..{start + WINDOW}"] = window.hex().encode()
    return forms


def find_leaks(haystack: bytes | str, seed: bytes) -> list[str]:
    """The names of the seed's forms found in ``haystack`` ([] if none)."""
    if isinstance(haystack, str):
        haystack = haystack.encode("utf-8", "surrogateescape")
    lowered = haystack.lower()
    found = []
    for name, needle in seed_forms(seed).items():
        text_form = name.startswith("hex") or name == "HEX"
        if (needle.lower() in lowered) if text_form else (needle in haystack):
            found.append(name)
    return found
