"""Bytes this process asked the kernel to write: ``wchar`` of ``/proc/self/io``.

statefs counts the bytes it hands the device; sqlite3 and lmdb do not, so write amplification is
compared on what every engine passes to ``write``/``pwrite`` (WAL frames and checkpoints for
sqlite3, pages and meta pages for lmdb, records for statefs). Not ``write_bytes``: with large
folios (ext4 on recent kernels) one dirtied 512-byte range counts as a whole folio, up to
2 MiB, which says nothing about the engine. Filesystem metadata and journal commits are
excluded for every engine alike.
"""

from __future__ import annotations


def written_bytes() -> int | None:
    """Bytes passed to write-family system calls so far, or None without /proc/self/io."""
    try:
        with open("/proc/self/io", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None
