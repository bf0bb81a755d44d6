"""CRC-32C (Castagnoli), the checksum of every record and superblock.

Two C implementations compute the same function, and the faster one present is used:

* the ``crc32c`` extension (ICRAR's; Debian's ``python3-crc32c``), which uses the CPU's
  CRC32C instructions where there are any and a slicing-by-8 table otherwise: about 13 GB/s
  on the host, which is what lets a 10,000-key store reopen in well under 20 ms;
* crcmod's C extension (``crcmod.predefined`` ``crc-32c``, Debian's ``python3-crcmod``), a
  byte-at-a-time table at about 450 MB/s: the reference, and the fallback.

``STATEFS_CRC=crcmod`` (or ``crc32c``) forces one; tests run the store under both and check
they agree. crcmod silently falls back to pure Python when its extension is missing, about a
hundred times slower, which would make replay times meaningless: that is refused.

Both take ``(data, seed)``, where ``seed`` continues an earlier CRC: ``crc32c(b, crc32c(a))``
equals ``crc32c(a + b)``.
"""

import os
import sys

CHOICES = ("auto", "crc32c", "crcmod")


def _crcmod():
    import crcmod.predefined

    if not getattr(sys.modules.get("crcmod.crcmod"), "_usingExtension", False):
        raise ImportError(
            "crcmod is running without its C extension (crcmod._crcfunext); "
            "reinstall crcmod with a C compiler and Python headers available"
        )
    return crcmod.predefined.mkCrcFun("crc-32c")


def _crc32c():
    import crc32c as implementation

    return implementation.crc32c


def _choose(choice: str):
    if choice not in CHOICES:
        raise ImportError(f"STATEFS_CRC={choice!r}: choose one of {', '.join(CHOICES)}")
    if choice == "crcmod":
        return "crcmod", _crcmod()
    try:
        return "crc32c", _crc32c()
    except ImportError:
        if choice == "crc32c":
            raise
    return "crcmod", _crcmod()


#: ``crc32c(data, seed=0) -> int``, and the name of the implementation behind it.
BACKEND, crc32c = _choose(os.environ.get("STATEFS_CRC", "auto") or "auto")
