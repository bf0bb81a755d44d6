"""ELF reading (on synthetic files) and the kernel-module load order."""

import struct

import pytest

from harness.image import elf, kmod
from harness.image.errors import ContentError


def make_elf(sections: list[tuple[str, int, bytes, int]], interp: str | None = None) -> bytes:
    """A minimal ELF64 LE file: ``sections`` are (name, type, data, link index)."""
    names = b"\0"
    offsets = []
    for name, *_ in [*sections, (".shstrtab", 3, b"", 0)]:
        offsets.append(len(names))
        names += name.encode() + b"\0"
    body = b""
    placed = []
    data_start = 64 + (56 if interp else 0)
    interp_bytes = interp.encode() + b"\0" if interp else b""
    body += interp_bytes
    for _name, _kind, data, _link in [*sections, (".shstrtab", 3, names, 0)]:
        placed.append((data_start + len(body), len(data)))
        body += data
    shoff = data_start + len(body)
    shnum = len(sections) + 2
    header = struct.pack(
        "<16sHHIQQQIHHHHHH",
        b"\x7fELF\x02\x01\x01" + b"\0" * 9,
        3,
        183,
        1,
        0,
        64 if interp else 0,
        shoff,
        0,
        64,
        56,
        1 if interp else 0,
        64,
        shnum,
        shnum - 1,
    )
    phdr = (
        struct.pack("<IIQQQQQQ", 3, 4, data_start, 0, 0, len(interp_bytes), 0, 1) if interp else b""
    )
    shdrs = b"\0" * 64
    all_sections = [*sections, (".shstrtab", 3, names, 0)]
    for index, (_name, kind, _data, link) in enumerate(all_sections):
        offset, size = placed[index]
        shdrs += struct.pack("<IIQQQQIIQQ", offsets[index], kind, 0, 0, offset, size, link, 0, 1, 0)
    return header + phdr + body + shdrs


def test_modinfo_depends() -> None:
    info = b"license=GPL\0depends=virtio,virtio_ring\0name=virtio_mmio\0"
    data = make_elf([(".modinfo", 1, info, 0)])
    assert elf.modinfo(data) == {
        "license": ["GPL"],
        "depends": ["virtio,virtio_ring"],
        "name": ["virtio_mmio"],
    }


def test_needed_and_interpreter() -> None:
    dynstr = b"\0libc.so.6\0libz.so.1\0"
    dynamic = struct.pack("<qQqQqQqQ", 1, 1, 5, 0, 1, 11, 0, 0)  # NEEDED, STRTAB, NEEDED, NULL
    data = make_elf([(".dynstr", 3, dynstr, 0), (".dynamic", 6, dynamic, 1)], "/lib/ld.so.1")
    assert elf.needed(data) == ["libc.so.6", "libz.so.1"]
    assert elf.interpreter(data) == "/lib/ld.so.1"


def test_static_binary_has_no_interpreter_and_no_needs() -> None:
    data = make_elf([(".text", 1, b"\0" * 8, 0)])
    assert elf.interpreter(data) is None
    assert elf.needed(data) == []
    assert elf.modinfo(data) == {}


def test_non_elf_is_rejected() -> None:
    assert not elf.is_elf(b"#!/bin/sh\n")
    with pytest.raises(elf.ElfError):
        elf.needed(b"#!/bin/sh\n")


def test_module_names_follow_the_kernel() -> None:
    assert kmod.module_name("kernel/drivers/char/hw_random/virtio-rng.ko") == "virtio_rng"


AVAILABLE = {
    "virtio_blk": "kernel/drivers/block/virtio_blk.ko",
    "virtio_rng": "kernel/drivers/char/hw_random/virtio-rng.ko",
    "virtio_mmio": "kernel/drivers/virtio/virtio_mmio.ko",
    "rng_core": "kernel/drivers/char/hw_random/rng-core.ko",
    "a": "a.ko",
    "b": "b.ko",
}
DEPENDS = {
    "kernel/drivers/char/hw_random/virtio-rng.ko": ["rng-core", "virtio"],
    "a.ko": ["b"],
    "b.ko": ["a"],
}


def _order(wanted: list[str], builtins: set[str] = frozenset({"virtio", "virtio_ring"})):
    return kmod.load_order(wanted, AVAILABLE, set(builtins), lambda rel: DEPENDS.get(rel, []))


def test_dependencies_come_first_and_builtins_are_skipped() -> None:
    assert _order(["virtio_mmio", "virtio_blk", "virtio_rng"]) == [
        "kernel/drivers/virtio/virtio_mmio.ko",
        "kernel/drivers/block/virtio_blk.ko",
        "kernel/drivers/char/hw_random/rng-core.ko",
        "kernel/drivers/char/hw_random/virtio-rng.ko",
    ]


def test_each_module_is_listed_once() -> None:
    assert _order(["rng_core", "virtio_rng", "virtio-rng"]) == [
        "kernel/drivers/char/hw_random/rng-core.ko",
        "kernel/drivers/char/hw_random/virtio-rng.ko",
    ]


def test_builtin_module_needs_no_file() -> None:
    assert _order(["virtio_rng"], {"virtio", "rng_core"}) == [
        "kernel/drivers/char/hw_random/virtio-rng.ko"
    ]


def test_unknown_module_and_cycles_are_errors() -> None:
    with pytest.raises(ContentError, match=r"'nosuch'.*recipe"):
        _order(["nosuch"])
    with pytest.raises(ContentError, match="cycle: a -> b -> a"):
        _order(["a"])
