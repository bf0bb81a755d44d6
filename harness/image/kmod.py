"""Kernel modules: which ``.ko`` files to ship and the order to insmod them in.

Debian's kernel package ships no ``modules.dep`` (``depmod`` writes it at install time), and
busybox's ``insmod`` resolves nothing, so we read each module's ``.modinfo`` ``depends=`` list
ourselves and order the closure dependencies-first. Modules built into the kernel (listed in
``modules.builtin``) need no file and are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from harness.image import elf
from harness.image.errors import ContentError


def module_name(path: str) -> str:
    """The kernel's name for a module file: ``virtio-rng.ko`` -> ``virtio_rng``."""
    return Path(path).name.removesuffix(".ko").replace("-", "_")


def modules_dir(tree: Path) -> Path:
    """``lib/modules/<release>`` of an extracted kernel package (exactly one release)."""
    releases = sorted((tree / "lib" / "modules").glob("*/kernel"))
    if len(releases) != 1:
        raise ContentError(
            f"expected one kernel release under {tree}/lib/modules, found {len(releases)}: "
            "check the kernel package in the recipe"
        )
    return releases[0].parent


def index(moddir: Path) -> dict[str, str]:
    """Module name -> path relative to ``moddir`` for every ``.ko`` file."""
    return {
        module_name(str(path)): str(path.relative_to(moddir))
        for path in sorted(moddir.rglob("*.ko"))
    }


def builtin(moddir: Path) -> set[str]:
    listing = moddir / "modules.builtin"
    if not listing.is_file():
        return set()
    return {module_name(line.strip()) for line in listing.read_text().splitlines() if line.strip()}


def depends_of(path: Path) -> list[str]:
    """The module names ``path`` depends on, from its ``.modinfo``."""
    info = elf.modinfo(path.read_bytes())
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
