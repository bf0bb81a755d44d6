"""The build keys: each product is rebuilt only when the digest of what it depends on changed.

A digest is SHA-256 over length-prefixed parts, so ``["ab", "c"]`` and ``["a", "bc"]`` differ;
file digests cover relative names and contents, so a rename counts as a change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from harness.image import layout
from harness.image.lock import Lock
from harness.image.recipe import Recipe

#: Bump when the layout of an unpacked package tree changes (older trees are rebuilt).
TREE_FORMAT = 1
_BUILDER_DIR = Path(__file__).resolve().parent


def digest(parts: Iterable[bytes | str]) -> str:
    """SHA-256 over the length-prefixed parts, hex."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def files_digest(root: Path, files: Iterable[Path]) -> str:
    """A digest over relative names and contents (so a rename counts as a change)."""
    parts: list[bytes | str] = []
    for path in files:
        parts += [path.relative_to(root).as_posix(), path.read_bytes()]
    return digest(parts)


def builder_digest() -> str:
    """The image builder's own code: a change to it rebuilds the base segment."""
    return files_digest(_BUILDER_DIR, sorted(_BUILDER_DIR.glob("*.py")))


def base_key(recipe: Recipe, *, compiler: str) -> str:
    """The base segment: builder code, recipe, lock file, and which compiler makes the .pyc
    (``host``, ``guest`` or ``none``: harness.image.bytecode)."""
    return digest(
        [
            builder_digest(),
            recipe.path.read_bytes(),
            recipe.lock_path.read_bytes(),
            compiler,
        ]
    )


def guest_key(guest_dir: Path) -> str:
    """The guest segment: every file ``guest/`` contributes to the image."""
    return files_digest(guest_dir, layout.guest_files(guest_dir))


def stdlib_key(base: str, kept: Iterable[str]) -> str:
    """The stdlib segment: the base key and the kept module set."""
    return digest([base, *sorted(kept)])


def tree_key(recipe: Recipe, pins: Lock) -> str:
    """The unpacked package tree: the pins and the kernel module list (20 hex digits: it is a
    directory name)."""
    return digest(
        [
            str(TREE_FORMAT),
            *(f"{p.name} {p.version} {p.sha256}" for p in sorted(pins.pins, key=lambda p: p.name)),
            *recipe.kernel.modules,
            recipe.kernel.image_glob,
        ]
    )[:20]
