"""The package-tree cache: pinned .debs unpacked and pruned once, shared by every build.

A tree lives in ``<cache>/trees/<arch>/<key>/`` (:func:`harness.image.keys.tree_key`: the
pins and the kernel module list), with ``tree.json`` naming the kernel release, the kernel
image and the modules in load order. It is built in ``<key>.tmp`` and renamed into place, under
the cache lock, so a killed build leaves no half tree; the newest two are kept, because another
checkout may pin other versions.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.image import cache, extract, keys, kmod
from harness.image.errors import ContentError, DiskFull, ImageError, is_disk_full
from harness.image.lock import Lock
from harness.image.progress import Progress
from harness.image.recipe import Recipe

TREE_INFO = "tree.json"


@dataclass(frozen=True)
class PackageTree:
    """An unpacked, pruned package tree in the cache."""

    root: Path
    release: str  # kernel release, e.g. 6.1.0-56-arm64
    kernel_image: str  # path of the kernel image inside the tree
    modules: tuple[str, ...]  # module paths under lib/modules/<release>, load order


def package_tree(
    recipe: Recipe,
    pins: Lock,
    cache_dir: Path,
    fetch: Callable[[], list[Path]],
    progress: Progress,
) -> PackageTree:
    """The tree for these pins: from the cache, or unpacked from ``fetch()``'s .debs."""
    key = keys.tree_key(recipe, pins)
    trees = cache_dir / "trees" / recipe.arch
    root = trees / key
    with cache.locked(cache_dir / ".lock"):
        found = load_tree(root)
        if found is not None:
            return found
        debs = fetch()
        tmp = trees / f"{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with progress.step(f"unpack {len(debs)} packages"):
                extract.unpack(debs, tmp)
            with progress.step("kernel modules"):
                info = prepare_kernel(recipe, tmp)
                (tmp / TREE_INFO).write_text(json.dumps(info, indent=1))
            extract.replace_dir(tmp, root)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(trees, exc) from exc
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        prune_trees(trees, keep=root)
        found = load_tree(root)
        if found is None:
            raise ImageError(f"package tree {root} unusable right after building it")
        return found


def prune_trees(trees: Path, keep: Path, count: int = 2) -> None:
    """Keep the newest ``count`` trees (another checkout may pin other versions)."""
    others = sorted(
        (d for d in trees.iterdir() if d.is_dir() and d != keep),
        key=lambda d: d.stat().st_mtime,
        reverse=True,
    )
    for stale in others[count - 1 :]:
        shutil.rmtree(stale, ignore_errors=True)


def load_tree(root: Path) -> PackageTree | None:
    """The tree at ``root``, or None when it is missing or its ``tree.json`` is unusable."""
    try:
        info = json.loads((root / TREE_INFO).read_text())
        return PackageTree(root, info["release"], info["kernel_image"], tuple(info["modules"]))
    except (OSError, ValueError, KeyError):
        return None


def prepare_kernel(recipe: Recipe, tree: Path) -> dict[str, Any]:
    """Find the kernel image, order the recipe's modules by dependency, prune the rest."""
    images = sorted(tree.glob(recipe.kernel.image_glob))
    if len(images) != 1:
        raise ContentError(
            f"expected one kernel image matching {recipe.kernel.image_glob} in the kernel "
            f"package, found {len(images)}"
        )
    moddir = kmod.modules_dir(tree)
    order = kmod.load_order(
        recipe.kernel.modules,
        kmod.index(moddir),
        kmod.builtin(moddir),
        lambda rel: kmod.depends_of(moddir / rel),
    )
    order = kmod.decompress(moddir, order)
    extract.prune_kernel_modules(moddir, order)
    return {
        "release": moddir.name,
        "kernel_image": str(images[0].relative_to(tree)),
        "modules": order,
    }
