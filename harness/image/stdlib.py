"""Which stdlib modules the guest image keeps, computed from the code that runs there.

Under TCG every byte the kernel unpacks and every module Python imports costs boot time, so the
image ships a trimmed stdlib. The kept set is *computed*, never listed by hand:

1. every import statement in ``guest/`` and in the third-party packages the recipe ships
   (``ast``, fast) whose top-level name is a stdlib module is a root;
2. the roots, plus the recipe's ``[stdlib].extra`` (modules imported by name at run time, such
   as the interpreter's start-up codecs), go through :mod:`modulefinder`, which follows every
   import statically, including lazy ones inside functions;
3. ``[stdlib].exclude`` prunes subtrees reachable only through optional, lazy imports (asyncio,
   email, OpenSSL, ...); a module guest code imports directly is never excluded.

Step 2 is the slow one (about a second), and it depends only on the roots, so its result is
cached by a key over the roots, the recipe lists and the host Python. A host test
(``tests/image/test_stdlib_guard.py``) imports every guest module and fails when one loads a
stdlib module this set lacks.

Kept modules are compiled on the host to unchecked-hash ``.pyc`` files (PEP 552) when the
host's Python writes the guest's bytecode format (the same minor version: 3.11 for aarch64), and
nothing is compiled at boot. A guest of another version (riscv64's 3.13) gets sources, and its
closure is walked over its own stdlib (:mod:`harness.image.treeclosure`).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import json
import logging
import marshal
import modulefinder
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.atomic import write_json
from harness.image import treeclosure
from harness.image.errors import ImageError

log = logging.getLogger(__name__)

CLOSURE_FORMAT = 1


@dataclass(frozen=True)
class ImportScan:
    """Import statements found in a body of source code."""

    statements: frozenset[str]  # normalized absolute import statements of stdlib modules
    stdlib_roots: frozenset[str]  # top-level stdlib names imported directly
    other_roots: frozenset[str]  # top-level non-stdlib, non-local names (third party)


def is_stdlib(name: str) -> bool:
    return name.partition(".")[0] in sys.stdlib_module_names


def python_files(root: Path) -> list[Path]:
    """Every ``.py`` file under ``root`` (or ``root`` itself if it is one), skipping
    ``__pycache__``, sorted."""
    if root.is_file():
        return [root] if root.suffix == ".py" else []
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def scan_imports(files: Iterable[Path], local: Sequence[str] = ()) -> ImportScan:
    """Collect the absolute imports of ``files`` (relative ones are package-internal).

    ``local`` are top-level names that belong to the code being scanned (``guest``), ignored.
    """
    statements: set[str] = set()
    stdlib_roots: set[str] = set()
    other: set[str] = set()
    for path in files:
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except SyntaxError as exc:
            raise ImageError(f"{path}: cannot be parsed ({exc.msg}, line {exc.lineno})") from exc
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [(alias.name, f"import {alias.name}") for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported = ", ".join(sorted(alias.name for alias in node.names))
                names = [(node.module, f"from {node.module} import {imported}")]
            else:
                continue
            for module, statement in names:
                top = module.partition(".")[0]
                if top in local:
                    continue
                if is_stdlib(top):
                    stdlib_roots.add(top)
                    statements.add(statement)
                else:
                    other.add(top)
    return ImportScan(frozenset(statements), frozenset(stdlib_roots), frozenset(other))


def closure(
    scan: ImportScan,
    extra: Sequence[str],
    exclude: Sequence[str],
    cache_dir: Path | None = None,
    guest_stdlib: Path | None = None,
) -> frozenset[str]:
    """The stdlib modules (dotted names) reachable from ``scan`` and ``extra``, minus
    ``exclude``; modulefinder runs only when the cache has no answer for these inputs.

    With ``guest_stdlib`` (the guest's stdlib directory, for a guest Python of another minor
    version than the host's) the imports are followed through the guest's own sources
    (:mod:`harness.image.treeclosure`) instead of the host's."""
    excluded = sorted(set(exclude) - scan.stdlib_roots - set(extra))
    script = "\n".join([*sorted(scan.statements), *(f"import {name}" for name in sorted(extra))])
    where = str(guest_stdlib) if guest_stdlib is not None else sys.version
    key = hashlib.sha256(
        json.dumps([CLOSURE_FORMAT, where, script, excluded]).encode()
    ).hexdigest()[:32]
    cached = cache_dir / f"{key}.json" if cache_dir else None
    if cached is not None and cached.is_file():
        try:
            return frozenset(json.loads(cached.read_text()))
        except (OSError, ValueError):
            log.debug("stdlib closure cache %s unreadable, recomputing", cached)
    if guest_stdlib is not None:
        roots = treeclosure.imports_of(script, "")
        kept = treeclosure.tree_closure(roots, excluded, guest_stdlib)
        _save(cached, kept)
        return kept
    finder = modulefinder.ModuleFinder(excludes=excluded)
    # file_info's third field is imp's PY_SOURCE (1), which typeshed declares as a str.
    source_info: Any = ("", "r", 1)
    finder.load_module("__statefs_qemu_roots__", io.StringIO(script + "\n"), "<roots>", source_info)
    unknown = sorted(name for name in extra if name not in finder.modules)
    if unknown:
        log.warning("[stdlib].extra names modules this Python does not have: %s", unknown)
    kept = frozenset(
        name
        for name in finder.modules
        if is_stdlib(name) and not _is_excluded(name, excluded) and name != "__main__"
    )
    _save(cached, kept)
    return kept


def _save(cached: Path | None, kept: frozenset[str]) -> None:
    if cached is not None:
        try:
            write_json(cached, sorted(kept), indent=None)
        except OSError as exc:
            log.debug("cannot cache the stdlib closure in %s: %s", cached, exc)


def _is_excluded(name: str, excluded: Sequence[str]) -> bool:
    return any(name == ex or name.startswith(ex + ".") for ex in excluded)


# --- mapping the kept names onto the guest's stdlib tree ------------------------------------


@dataclass(frozen=True)
class StdlibFile:
    """One file to ship: ``relpath`` under the guest stdlib dir, from ``source`` in the tree."""

    module: str
    relpath: str
    source: Path
    compile: bool  # a .py to compile to a sourceless .pyc (relpath already ends in .pyc)


def locate(names: Iterable[str], stdlib_dir: Path) -> tuple[list[StdlibFile], list[str]]:
    """Files implementing ``names`` in the guest's stdlib; and the names with no file there
    (builtins of the guest interpreter, frozen modules, or modules it does not have)."""
    files: list[StdlibFile] = []
    unfound: list[str] = []
    dynload = stdlib_dir / "lib-dynload"
    for name in sorted(names):
        parts = name.split(".")
        as_module = stdlib_dir.joinpath(*parts[:-1], parts[-1] + ".py")
        as_package = stdlib_dir.joinpath(*parts, "__init__.py")
        extensions = sorted(dynload.glob(f"{name}.cpython-*.so")) if len(parts) == 1 else []
        if as_package.is_file():
            rel = "/".join([*parts, "__init__.pyc"])
            files.append(StdlibFile(name, rel, as_package, True))
        elif as_module.is_file():
            rel = "/".join(parts) + ".pyc"
            files.append(StdlibFile(name, rel, as_module, True))
        elif extensions:
            ext = extensions[0]
            files.append(StdlibFile(name, f"lib-dynload/{ext.name}", ext, False))
        else:
            unfound.append(name)
    return files, unfound


def guest_builtins(interpreter: bytes) -> frozenset[str]:
    """Modules compiled into the guest interpreter, from its exported ``PyInit_*`` symbols."""
    names = {"sys", "builtins", "marshal", "_warnings", "_imp", "_frozen_importlib"}
    start = 0
    marker = b"PyInit_"
    while (found := interpreter.find(marker, start)) >= 0:
        end = found + len(marker)
        stop = end
        while stop < len(interpreter) and (
            chr(interpreter[stop]).isalnum() or interpreter[stop] == 95
        ):
            stop += 1
        if stop > end:
            names.add(interpreter[end:stop].decode("ascii"))
        start = stop
    return frozenset(names)


def pyc_bytes(source: bytes, guest_path: str) -> bytes:
    """An unchecked-hash ``.pyc`` (PEP 552) for ``source``, with ``guest_path`` as its file
    name in tracebacks. Unchecked: the image is immutable, so the loader need not stat or
    hash the source at boot."""
    code = compile(source, guest_path, "exec", dont_inherit=True, optimize=0)
    flags = (0b01).to_bytes(4, "little")  # hash-based, check_source off
    return (
        importlib.util.MAGIC_NUMBER
        + flags
        + importlib.util.source_hash(source)
        + marshal.dumps(code)
    )


def host_can_compile(guest_version: str) -> bool:
    """Bytecode is only portable within one minor version (same magic number)."""
    return f"{sys.version_info.major}.{sys.version_info.minor}" == guest_version
