"""Just enough ELF reading for the image: shared-library needs, the program interpreter, and a
kernel module's ``.modinfo``.

The host is x86_64 and the guest binaries are aarch64, so ``ldd`` and ``modinfo`` cannot run
them; reading the few structures we need (ELF64 little-endian, section headers) is simpler
than depending on binutils.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ELF_MAGIC = b"\x7fELF"
_PT_INTERP = 3
_SHT_DYNAMIC = 6
_DT_NEEDED = 1


class ElfError(ValueError):
    """Not an ELF64 little-endian file, or a malformed one."""


@dataclass(frozen=True)
class _Section:
    name: str
    type: int
    offset: int
    size: int
    link: int


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def _check(data: bytes) -> None:
    if not is_elf(data):
        raise ElfError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ElfError("only ELF64 little-endian is supported")


def _sections(data: bytes) -> list[_Section]:
    _check(data)
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    raw = []
    for index in range(shnum):
        base = shoff + index * shentsize
        name, kind, _flags, _addr, offset, size, link = struct.unpack_from("<IIQQQQI", data, base)
        raw.append((name, kind, offset, size, link))
    if not raw:
        return []
    _, _, str_off, str_size, _ = raw[shstrndx]
    names = data[str_off : str_off + str_size]
    return [
        _Section(_cstring(names, name), kind, offset, size, link)
        for name, kind, offset, size, link in raw
    ]


def _cstring(blob: bytes, offset: int) -> str:
    end = blob.find(b"\0", offset)
    return blob[offset : end if end >= 0 else len(blob)].decode("utf-8", "replace")


def section(data: bytes, name: str) -> bytes | None:
    """The raw bytes of the section called ``name``, or None."""
    for sec in _sections(data):
        if sec.name == name:
            return data[sec.offset : sec.offset + sec.size]
    return None


def needed(data: bytes) -> list[str]:
    """The DT_NEEDED shared-library names, in order."""
    sections = _sections(data)
    result = []
    for sec in sections:
        if sec.type != _SHT_DYNAMIC:
            continue
        strtab = sections[sec.link]
        strings = data[strtab.offset : strtab.offset + strtab.size]
        for pos in range(sec.offset, sec.offset + sec.size, 16):
            tag, value = struct.unpack_from("<qQ", data, pos)
            if tag == 0:
                break
            if tag == _DT_NEEDED:
                result.append(_cstring(strings, value))
    return result


def interpreter(data: bytes) -> str | None:
    """The PT_INTERP path (the dynamic loader) of an executable, or None if static."""
    _check(data)
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for index in range(phnum):
        base = phoff + index * phentsize
        kind, _flags, offset, _vaddr, _paddr, filesz = struct.unpack_from("<IIQQQQ", data, base)
        if kind == _PT_INTERP:
            return data[offset : offset + filesz].rstrip(b"\0").decode("utf-8")
    return None


def modinfo(data: bytes) -> dict[str, list[str]]:
    """A kernel module's ``.modinfo`` as ``key -> values`` (e.g. ``name``, ``depends``)."""
    raw = section(data, ".modinfo")
    info: dict[str, list[str]] = {}
    if raw is None:
        return info
    for item in raw.split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep:
            info.setdefault(key, []).append(value)
    return info
