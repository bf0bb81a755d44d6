"""The newc ("070701") cpio format, written and read in pure Python.

The kernel unpacks the initramfs from this format. Writing it ourselves means no ``cpio`` or
``mknod`` on the host and no root needed for the ``/dev/console`` node, and it lets the builder
produce the archive in *segments* (base, stdlib, guest) that are cached separately and
concatenated: each entry starts on a 4-byte boundary and ends padded to one, so segments join
byte for byte, and one ``TRAILER!!!`` entry closes the whole archive.

Entry layout (all numbers are 8 ASCII hex digits)::

    "070701" ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor
    namesize check | name NUL | pad to 4 | data | pad to 4

``namesize`` counts the NUL; ``check`` is 0 (newc has no checksum). Symlink data is the target.
The kernel does not create missing parent directories, so the writer emits each parent
directory before the first entry below it (and never twice).
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
HEADER_SIZE = 110
_FIELDS = (
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
)


class CpioFormatError(ValueError):
    """The bytes are not a newc archive (raised by the reader)."""


@dataclass(frozen=True)
class Entry:
    """One archive member; ``name`` is relative (no leading ``/``), ``data`` the content."""

    name: str
    mode: int
    data: bytes = b""
    ino: int = 0
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    mtime: int = 0
    rdevmajor: int = 0
    rdevminor: int = 0

    @property
    def kind(self) -> str:
        if stat.S_ISDIR(self.mode):
            return "dir"
        if stat.S_ISLNK(self.mode):
            return "symlink"
        if stat.S_ISCHR(self.mode):
            return "chardev"
        if stat.S_ISREG(self.mode):
            return "file"
        return "other"


def _pad(length: int) -> int:
    return (4 - length % 4) % 4


def encode_entry(entry: Entry) -> bytes:
    """One entry as newc bytes, padded so the next entry starts on a 4-byte boundary."""
    name = entry.name.encode("utf-8") + b"\0"
    values = (
        entry.ino,
        entry.mode,
        entry.uid,
        entry.gid,
        entry.nlink,
        entry.mtime,
        len(entry.data),
        0,
        0,
        entry.rdevmajor,
        entry.rdevminor,
        len(name),
        0,
    )
    header = MAGIC + b"".join(b"%08X" % value for value in values)
    return b"".join(
        (
            header,
            name,
            b"\0" * _pad(HEADER_SIZE + len(name)),
            entry.data,
            b"\0" * _pad(len(entry.data)),
        )
    )


def trailer() -> bytes:
    """The closing entry of an archive."""
    return encode_entry(Entry(TRAILER, 0, nlink=1))


class CpioWriter:
    """Accumulates entries of one archive segment, creating parent directories on the way.

    ``existing_dirs`` are directories earlier segments already created; ``first_ino`` lets
    segments use disjoint inode numbers (the kernel treats equal inode numbers with nlink > 1
    as hard links, so numbers must not repeat within one archive).
    """

    def __init__(
        self, *, mtime: int = 0, first_ino: int = 1, existing_dirs: Iterable[str] = ()
    ) -> None:
        self.mtime = mtime
        self._next_ino = first_ino
        self._dirs: set[str] = set(existing_dirs)
        self._names: set[str] = set()
        self._chunks: list[bytes] = []

    @property
    def dirs(self) -> frozenset[str]:
        return frozenset(self._dirs)

    def _add(self, name: str, mode: int, data: bytes = b"", **extra: int) -> None:
        name = name.strip("/")
        if not name:
            raise ValueError("empty cpio member name")
        if name in self._names:
            raise ValueError(f"duplicate cpio member {name!r}")
        self._parents(name)
        self._names.add(name)
        entry = Entry(name, mode, data, ino=self._next_ino, mtime=self.mtime, **extra)
        self._next_ino += 1
        self._chunks.append(encode_entry(entry))

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if parent not in self._dirs:
                self.directory(parent)

    def directory(self, name: str, perm: int = 0o755) -> None:
        name = name.strip("/")
        if name in self._dirs:
            return
        self._parents(name)
        self._dirs.add(name)
        self._names.add(name)
        entry = Entry(name, stat.S_IFDIR | perm, ino=self._next_ino, nlink=2, mtime=self.mtime)
        self._next_ino += 1
        self._chunks.append(encode_entry(entry))

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._add(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._add(name, stat.S_IFLNK | 0o777, target.encode("utf-8"))

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._add(name, stat.S_IFCHR | perm, rdevmajor=major, rdevminor=minor)

    @property
    def next_ino(self) -> int:
        return self._next_ino

    def getvalue(self, *, close: bool = False) -> bytes:
        """The segment's bytes; with ``close`` the trailer is appended (a complete archive)."""
        body = b"".join(self._chunks)
        return body + trailer() if close else body


def read_entries(data: bytes) -> Iterator[Entry]:
    """Parse newc bytes, stopping at the first trailer (for tests and ``--list``)."""
    offset = 0
    while True:
        if offset + HEADER_SIZE > len(data):
            raise CpioFormatError(f"truncated header at offset {offset}")
        header = data[offset : offset + HEADER_SIZE]
        if header[:6] != MAGIC:
            raise CpioFormatError(f"bad magic {header[:6]!r} at offset {offset}")
        try:
            values = dict(
                zip(
                    _FIELDS,
                    (int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)),
                    strict=True,
                )
            )
        except ValueError as exc:
            raise CpioFormatError(f"bad header field at offset {offset}") from exc
        name_start = offset + HEADER_SIZE
        name_end = name_start + values["namesize"]
        raw_name = data[name_start:name_end]
        if len(raw_name) != values["namesize"] or not raw_name.endswith(b"\0"):
            raise CpioFormatError(f"bad name at offset {offset}")
        name = raw_name[:-1].decode("utf-8")
        data_start = name_end + _pad(HEADER_SIZE + values["namesize"])
        data_end = data_start + values["filesize"]
        if data_end > len(data):
            raise CpioFormatError(f"truncated data of {name!r} at offset {offset}")
        if name == TRAILER:
            return
        yield Entry(
            name=name,
            mode=values["mode"],
            data=data[data_start:data_end],
            ino=values["ino"],
            uid=values["uid"],
            gid=values["gid"],
            nlink=values["nlink"],
            mtime=values["mtime"],
            rdevmajor=values["rdevmajor"],
            rdevminor=values["rdevminor"],
        )
        offset = data_end + _pad(values["filesize"])
