"""CRC-32C (Castagnoli) through crcmod's C extension.

crcmod silently falls back to a pure-Python implementation when its extension is missing; that
is about a hundred times slower and would make replay times meaningless, so we refuse to run
on it (the guest image ships Debian's python3-crcmod, which has the extension).
"""

import sys

import crcmod.predefined

if not getattr(sys.modules.get("crcmod.crcmod"), "_usingExtension", False):
    raise ImportError(
        "crcmod is running without its C extension (crcmod._crcfunext); "
        "reinstall crcmod with a C compiler and Python headers available"
    )

_crc32c = crcmod.predefined.mkCrcFun("crc-32c")


def crc32c(data: bytes | bytearray | memoryview, seed: int = 0) -> int:
    """CRC-32C of ``data``; ``seed`` continues a previous CRC (``crc32c(b, crc32c(a))`` equals
    ``crc32c(a + b)``)."""
    return _crc32c(data, seed)
