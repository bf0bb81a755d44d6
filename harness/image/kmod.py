"""Kernel modules: which ``.ko`` files to ship and the order to insmod them in.

Debian's kernel package ships no ``modules.dep`` (``depmod`` writes it at install time), and
busybox's ``insmod`` resolves nothing, so we read each module's ``.modinfo`` ``depends=`` list
ourselves and order the closure dependencies-first. Modules built into the kernel (listed in
``modules.builtin``) need no file and are skipped. Debian 13 ships its modules xz-compressed
(``.ko.xz``); busybox's ``insmod`` hands the file to ``init_module`` as it is, so the ones the
image keeps are decompressed at build time (:func:`decompress`).
"""

from __future__ import annotations

import lzma
from collections.abc import Callable, Iterable
from pathlib import Path

from harness.image import elf
from harness.image.errors import ContentError

#: Suffixes of a module file: plain, or compressed as the kernel's MODULE_COMPRESS_XZ does.
SUFFIXES = (".ko", ".ko.xz")


def module_name(path: str) -> str:
    """The kernel's name for a module file: ``virtio-rng.ko[.xz]`` -> ``virtio_rng``."""
    name = Path(path).name
    for suffix in SUFFIXES:
        name = name.removesuffix(suffix) if name.endswith(suffix) else name
    return name.replace("-", "_")


def read_module(path: Path) -> bytes:
    """The ELF bytes of a module file, decompressed if it is a ``.ko.xz``."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        try:
            return lzma.decompress(data, format=lzma.FORMAT_XZ)
        except lzma.LZMAError as exc:
            raise ContentError(f"{path}: not a valid xz-compressed module ({exc})") from exc
    return data


def decompress(moddir: Path, order: Iterable[str]) -> list[str]:
    """Replace each ``.ko.xz`` of ``order`` by its ``.ko``; returns the new relative paths."""
    result = []
    for rel in order:
        if rel.endswith(".xz"):
            plain = rel.removesuffix(".xz")
            (moddir / plain).write_bytes(read_module(moddir / rel))
            (moddir / rel).unlink()
            rel = plain
        result.append(rel)
    return result


def modules_dir(tree: Path) -> Path:
    """``lib/modules/<release>`` (``usr/lib/...`` in Debian 13) of an extracted kernel package
    (exactly one release)."""
    releases = sorted(
        path for top in ("lib", "usr/lib") for path in (tree / top / "modules").glob("*/kernel")
    )
    if len(releases) != 1:
        raise ContentError(
            f"expected one kernel release under {tree}/lib/modules, found {len(releases)}: "
            "check the kernel package in the recipe"
        )
    return releases[0].parent


def index(moddir: Path) -> dict[str, str]:
    """Module name -> path relative to ``moddir`` for every ``.ko`` (or ``.ko.xz``) file."""
    return {
        module_name(str(path)): str(path.relative_to(moddir))
        for suffix in SUFFIXES
        for path in sorted(moddir.rglob(f"*{suffix}"))
    }


def builtin(moddir: Path) -> set[str]:
    listing = moddir / "modules.builtin"
    if not listing.is_file():
        return set()
    return {module_name(line.strip()) for line in listing.read_text().splitlines() if line.strip()}


def depends_of(path: Path) -> list[str]:
    """The module names ``path`` depends on, from its ``.modinfo``."""
    info = elf.modinfo(read_module(path))
    return [
        name.replace("-", "_") for dep in info.get("depends", []) for name in dep.split(",") if name
    ]


def load_order(
    wanted: Iterable[str],
    available: dict[str, str],
    builtins: set[str],
    depends: Callable[[str], list[str]],
) -> list[str]:
    """Relative paths of the modules to insmod, each after everything it depends on.

    ``depends`` maps a relative module path to the module names it needs.
    """
    order: list[str] = []
    done: set[str] = set()
    active: list[str] = []

    def visit(name: str, wanted_by: str) -> None:
        name = name.replace("-", "_")
        if name in done or name in builtins:
            return
        if name in active:
            cycle = " -> ".join([*active[active.index(name) :], name])
            raise ContentError(f"kernel module dependency cycle: {cycle}")
        if name not in available:
            raise ContentError(
                f"kernel module {name!r} ({wanted_by}) is neither a .ko file in the kernel "
                f"package nor built in: fix [kernel].modules in the recipe"
            )
        active.append(name)
        for dep in depends(available[name]):
            visit(dep, f"needed by {name}")
        active.pop()
        done.add(name)
        order.append(available[name])

    for name in wanted:
        visit(name, "listed in the recipe")
    return order
