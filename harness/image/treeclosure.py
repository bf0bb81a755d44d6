"""The kept stdlib for a guest Python of another minor version than the host's.

:func:`harness.image.stdlib.closure` runs :mod:`modulefinder` over the *host's* stdlib, which is
right when host and guest run the same minor version (aarch64: 3.11 on both). A riscv64 guest
runs Debian 13's CPython 3.13, whose stdlib imports other modules (``hashlib`` needs ``_sha2``,
``traceback`` needs ``_colorize``); the host's modulefinder cannot see those, nor find
3.13 extension modules, nor always parse 3.13 sources. So the closure is walked over the guest's
own stdlib tree instead: every import statement of every reached module (inside functions
too, as modulefinder does), relative imports resolved, ``from pkg import name`` following
``pkg.name`` when that is a module. A source the host's :mod:`ast` cannot parse (3.12+
syntax) is scanned line by line for import statements: that may keep a module too many, never
one too few.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

#: Directories of the stdlib tree that are never guest modules.
_SKIP_DIRS = frozenset({"__pycache__", "site-packages", "dist-packages", "test", "tests"})
_IMPORT_LINE = re.compile(
    r"^[ \t]*(?:from[ \t]+(?P<module>\.*[\w.]*)[ \t]+import[ \t]+\(?(?P<names>[\w, \t]+)"
    r"|import[ \t]+(?P<plain>[\w., \t]+))",
    re.MULTILINE,
)


def index_tree(stdlib_dir: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package) for the sources and ``lib-dynload``
    extensions of a stdlib tree."""
    modules: dict[str, tuple[Path, bool]] = {}
    for path in sorted(stdlib_dir.rglob("*.py")):
        rel = path.relative_to(stdlib_dir)
        if _SKIP_DIRS & set(rel.parts[:-1]) or not path.is_file():
            continue
        parts = list(rel.with_suffix("").parts)
        package = parts[-1] == "__init__"
        if package:
            parts.pop()
        if parts and all(part.isidentifier() for part in parts):
            modules[".".join(parts)] = (path, package)
    for path in sorted((stdlib_dir / "lib-dynload").glob("*.so")):
        modules.setdefault(path.name.split(".", 1)[0], (path, False))
    return modules


def _absolute(module: str, level: int, package: str) -> str:
    if level == 0:
        return module
    base = package.rsplit(".", level - 1)[0] if level > 1 else package
    return f"{base}.{module}" if module else base


def imports_of(source: str, package: str) -> set[str]:
    """Every module name ``source`` may import (``package``: where its relative imports
    start), each ``from x import y`` giving both ``x`` and ``x.y``."""
    names: set[str] = set()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        for match in _IMPORT_LINE.finditer(source):
            if match["plain"]:
                names.update(item.split()[0] for item in match["plain"].split(",") if item.strip())
                continue
            dotted = match["module"]
            level = len(dotted) - len(dotted.lstrip("."))
            module = _absolute(dotted.lstrip("."), level, package)
            names.add(module)
            names.update(
                f"{module}.{item.split()[0]}" for item in match["names"].split(",") if item.strip()
            )
        return names
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node.module or "", node.level, package)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def tree_closure(roots: Iterable[str], exclude: Sequence[str], stdlib_dir: Path) -> frozenset[str]:
    """The modules of ``stdlib_dir`` reachable from ``roots``, never entering ``exclude``
    (dotted prefixes). Names the tree has no file for (builtins, frozen) are not followed."""
    modules = index_tree(stdlib_dir)
    excluded = tuple(exclude)
    kept: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in kept or name not in modules:
            continue
        if any(name == item or name.startswith(item + ".") for item in excluded):
            continue
        kept.add(name)
        parent = name.rpartition(".")[0]
        if parent:
            pending.append(parent)
        path, is_package = modules[name]
        if path.suffix == ".py":
            source = path.read_text(encoding="utf-8", errors="replace")
            pending.extend(imports_of(source, name if is_package else parent))
    return frozenset(kept)
