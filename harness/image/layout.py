"""What goes where in the initramfs, as three cpio segments.

* **base**: directories, ``/dev/console``, busybox and its applet links, the interpreter and the
  shared libraries it needs, the kernel modules and their load order, the third-party Python
  packages (crcmod), and ``/init``. Depends on the pins and the recipe only.
* **stdlib**: the kept stdlib modules as sourceless ``.pyc`` files plus the ``lib-dynload``
  extensions (and any library those need). Depends on the base and the kept set.
* **guest**: the ``guest`` package, sources plus ``__pycache__`` bytecode. Rebuilt whenever
  ``guest/`` changes; it takes a fraction of a second.

``guest`` and crcmod are placed in the stdlib directory itself (``/usr/lib/python3.11``), which
is on every guest interpreter's default ``sys.path`` even with ``-I -S``: any process the guest
starts (``python3 -m guest.statefsd``) finds them without path set-up.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from harness.image import elf, stdlib
from harness.image.cpio import CpioWriter
from harness.image.errors import ContentError
from harness.image.recipe import Recipe

log = logging.getLogger(__name__)

MODULE_LIST = "etc/statefs-qemu/modules"
#: Top-level directories a merged-/usr system keeps under /usr, reachable through symlinks.
MERGED_USR_DIRS = ("bin", "sbin", "lib")
EMPTY_DIRS = ("proc", "sys", "dev", "run", "root", "etc/statefs-qemu")
STICKY_DIRS = ("tmp",)


@dataclass
class Segment:
    """One piece of the archive plus what later segments need to know about it."""

    data: bytes
    dirs: frozenset[str]
    next_ino: int
    libraries: frozenset[str] = frozenset()  # sonames shipped by this and earlier segments
    info: dict[str, object] = field(default_factory=dict)


def init_script(recipe: Recipe) -> bytes:
    """``/init``: the interpreter with start-up flags, then the guest's PID 1."""
    interpreter = "/" + (
        recipe.python.links[0] if recipe.python.links else recipe.python.interpreter
    )
    return (
        f"#!{interpreter} {recipe.python.init_flags}\n"
        "# PID 1 launcher written by harness/image. guest/ lives in the stdlib directory, so\n"
        "# it is importable without sys.path set-up.\n"
        "from guest.init.pid1 import main\n"
        "\n"
        "main()\n"
    ).encode()


def canonical(rel: str, merged_usr: bool) -> str:
    """Where ``rel`` lives in a package tree: Debian 13 packages ship ``/lib`` and ``/bin``
    files under ``/usr`` (merged /usr), while ELF headers still name ``/lib/ld-linux-*``."""
    rel = rel.strip("/")
    if merged_usr and rel.split("/", 1)[0] in MERGED_USR_DIRS:
        return f"usr/{rel}"
    return rel


class TreeCopier:
    """Copies paths from an extracted package tree into a cpio writer, symlinks included."""

    def __init__(self, tree: Path, writer: CpioWriter, *, merged_usr: bool = False) -> None:
        self.tree = tree
        self.writer = writer
        self.merged_usr = merged_usr
        self.added: set[str] = set()

    def add(self, rel: str, dest: str | None = None) -> None:
        """Add ``rel`` (as ``dest``); a symlink is kept as one and its target added too."""
        rel = canonical(rel, self.merged_usr)
        dest = canonical(dest or rel, self.merged_usr)
        if dest in self.added:
            return
        source = self.tree / rel
        info = source.lstat()
        self.added.add(dest)
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(source)
            self.writer.symlink(dest, target)
            resolved = os.path.normpath(
                target.lstrip("/")
                if target.startswith("/")
                else os.path.join(os.path.dirname(rel), target)
            )
            self.add(resolved)
        elif stat.S_ISREG(info.st_mode):
            self.writer.file(dest, source.read_bytes(), stat.S_IMODE(info.st_mode))
        else:
            raise ContentError(f"{source}: not a file or symlink")


def resolve_libraries(
    tree: Path, binaries: Iterable[tuple[str, bytes]], libdirs: Sequence[str]
) -> dict[str, str]:
    """soname -> path in the tree of every shared library the binaries need, transitively."""
    found: dict[str, str] = {}
    pending = list(binaries)
    while pending:
        owner, data = pending.pop()
        for soname in elf.needed(data):
            if soname in found:
                continue
            for libdir in libdirs:
                candidate = tree / libdir / soname
                if candidate.exists():
                    found[soname] = f"{libdir}/{soname}"
                    pending.append((found[soname], candidate.read_bytes()))
                    break
            else:
                raise ContentError(
                    f"{owner} needs {soname}, which no package in the recipe provides (looked in "
                    f"{', '.join(libdirs)}): add its Debian package to [apt].packages, or exclude "
                    "the module that needs it in [stdlib].exclude"
                )
    return found


def _package_files(tree: Path, recipe: Recipe) -> list[tuple[str, Path]]:
    """(destination under the stdlib dir, source file) of the third-party packages."""
    result = []
    for package in recipe.python.packages:
        root = tree / package.source
        if root.is_file() and root.suffix == ".py":  # a single-module package (six.py)
            result.append((f"{package.name}.py", root))
            continue
        if not root.is_dir():
            raise ContentError(
                f"{package.source} is missing from the package tree (recipe "
                f"python.packages.{package.name}): check its Debian package"
            )
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if path.is_dir() or "__pycache__" in rel.parts or str(rel) in package.exclude:
                continue
            result.append((f"{package.name}/{rel}", path))
    return result


def package_sources(tree: Path, recipe: Recipe) -> list[Path]:
    """The ``.py`` files of the third-party packages that the image ships."""
    return [path for _, path in _package_files(tree, recipe) if path.suffix == ".py"]


#: Makes the ``.pyc`` of a source (named by its guest path); None: the image ships sources.
PycMaker = Callable[[bytes, str], bytes] | None


def build_base(
    recipe: Recipe, tree: Path, release: str, module_paths: Sequence[str], *, pyc: PycMaker
) -> Segment:
    """The base segment (see the module docstring)."""
    writer = CpioWriter(first_ino=1)
    copier = TreeCopier(tree, writer, merged_usr=recipe.merged_usr)
    for name in EMPTY_DIRS:
        writer.directory(name)
    if recipe.merged_usr:
        for name in MERGED_USR_DIRS:
            writer.symlink(name, f"usr/{name}")
    for name in STICKY_DIRS:
        writer.directory(name, 0o1777)
    writer.chardev("dev/console", 5, 1)

    busybox = recipe.busybox.path
    copier.add(busybox)
    bindir, _, busybox_name = busybox.rpartition("/")
    for applet in recipe.busybox.applets:
        if applet != busybox_name:
            writer.symlink(f"{bindir}/{applet}", busybox_name)

    python = recipe.python
    interpreter_data = (tree / python.interpreter).read_bytes()
    copier.add(python.interpreter)
    for link in python.links:
        same_dir = link.rpartition("/")[0] == python.interpreter.rpartition("/")[0]
        writer.symlink(
            link, python.interpreter.rpartition("/")[2] if same_dir else "/" + python.interpreter
        )
    loader = elf.interpreter(interpreter_data)
    if loader:
        copier.add(loader)

    binaries = [(python.interpreter, interpreter_data)]
    shipped_packages = []
    for dest, source in _package_files(tree, recipe):
        target = f"{python.stdlib}/{dest}"
        data = source.read_bytes()
        if source.suffix == ".py" and pyc is not None:
            target = target[: -len(".py")] + ".pyc"
            data = pyc(data, "/" + f"{python.stdlib}/{dest}")
        elif elf.is_elf(data):
            binaries.append((dest, data))
        writer.file(target, data, stat.S_IMODE(source.stat().st_mode))
        shipped_packages.append(target)
    for package in python.packages:
        for module in package.require:
            stem = f"{python.stdlib}/{module.replace('.', '/')}"
            if not any(
                p == stem + ".pyc"
                or p == stem + ".py"
                or (p.startswith(stem + ".") and p.endswith(".so"))
                for p in shipped_packages
            ):
                raise ContentError(f"{module} (required by the recipe) is not in the image")

    libraries = resolve_libraries(tree, binaries, python.libdirs)
    for path in sorted(libraries.values()):
        copier.add(path)

    moddir = canonical(f"lib/modules/{release}", recipe.merged_usr)
    for rel in module_paths:
        copier.add(f"{moddir}/{rel}")
    listing = "".join(f"/{moddir}/{rel}\n" for rel in module_paths)
    writer.file(MODULE_LIST, listing.encode())
    writer.file("init", init_script(recipe), 0o755)
    return Segment(
        writer.getvalue(),
        writer.dirs,
        writer.next_ino,
        frozenset(libraries),
        {"libraries": sorted(libraries), "modules": list(module_paths)},
    )


def build_stdlib(
    recipe: Recipe,
    tree: Path,
    kept: Iterable[str],
    base: Segment,
    *,
    pyc: PycMaker,
) -> Segment:
    """The stdlib segment: the kept modules, found in the guest's own stdlib tree."""
    writer = CpioWriter(first_ino=base.next_ino, existing_dirs=base.dirs)
    stdlib_dir = recipe.python.stdlib
    files, unfound = stdlib.locate(kept, tree / stdlib_dir)
    builtins = stdlib.guest_builtins((tree / recipe.python.interpreter).read_bytes())
    missing = sorted(name for name in unfound if name not in builtins)
    if missing:
        log.info("not in the guest's Python (host-only or frozen): %s", ", ".join(missing))
    binaries = []
    for item in files:
        data = item.source.read_bytes()
        rel = item.relpath
        if item.compile:
            py_rel = rel[: -len(".pyc")] + ".py"
            if pyc is not None:
                data = pyc(data, f"/{stdlib_dir}/{py_rel}")
            else:
                rel = py_rel
        else:
            binaries.append((item.relpath, data))
        writer.file(f"{stdlib_dir}/{rel}", data, 0o755 if not item.compile else 0o644)
    # CPython warns on every start ("Could not find platform dependent libraries") when its
    # lib-dynload directory is missing, even if no extension module is kept.
    writer.directory(f"{stdlib_dir}/lib-dynload")
    libraries = resolve_libraries(tree, binaries, recipe.python.libdirs)
    copier = TreeCopier(tree, writer, merged_usr=recipe.merged_usr)
    extra_libs = sorted(soname for soname in libraries if soname not in base.libraries)
    for soname in extra_libs:
        copier.add(libraries[soname])
    return Segment(
        writer.getvalue(),
        writer.dirs,
        writer.next_ino,
        base.libraries | frozenset(extra_libs),
        {
            "modules": sorted(item.module for item in files),
            "builtin": sorted(name for name in unfound if name in builtins),
            "not_in_guest": missing,
            "libraries": extra_libs,
        },
    )


#: Data files the guest reads at run time, shipped beside its modules (statefsd's policy).
GUEST_DATA_SUFFIXES = (".policy",)


def guest_files(guest_dir: Path) -> list[Path]:
    """The guest's modules and its data files (both part of the image's cache key)."""
    data = [
        path
        for path in guest_dir.rglob("*")
        if path.suffix in GUEST_DATA_SUFFIXES and "__pycache__" not in path.parts
    ]
    return sorted(stdlib.python_files(guest_dir) + data)


def build_guest(recipe: Recipe, guest_dir: Path, previous: Segment, *, pyc: PycMaker) -> Segment:
    """The guest segment: ``guest/**.py`` plus their bytecode in ``__pycache__``, and the
    guest's data files."""
    writer = CpioWriter(first_ino=previous.next_ino, existing_dirs=previous.dirs)
    base = f"{recipe.python.stdlib}/guest"
    tag = f"cpython-{recipe.python.version.replace('.', '')}"
    count = 0
    for path in guest_files(guest_dir):
        rel = path.relative_to(guest_dir)
        source = path.read_bytes()
        dest = f"{base}/{rel.as_posix()}"
        writer.file(dest, source)
        if pyc is not None and path.suffix == ".py":
            cache = PurePosixPath(
                base, rel.parent.as_posix(), "__pycache__", f"{rel.stem}.{tag}.pyc"
            )
            writer.file(str(cache), pyc(source, "/" + dest))
        count += 1
    return Segment(
        writer.getvalue(), writer.dirs, writer.next_ino, previous.libraries, {"files": count}
    )
