"""``build/images/<arch>/manifest``: what an image was built from, and what it contains.

JSON, written last and atomically by every build: the pinned packages (name, version, sha256),
the kernel release and modules, the kept stdlib, the sha256 of each output file, and the keys
the next ``ensure_image`` compares to decide whether anything must be rebuilt. The outputs are
checked against their sha256 on every ``ensure_image``: a damaged image is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.atomic import json_bytes
from harness.image.cache import write_atomic
from harness.image.fetch import sha256_file
from harness.image.layout import Segment
from harness.image.lock import Lock
from harness.image.recipe import Recipe

MANIFEST_FORMAT = 1
MANIFEST_NAME = "manifest"
KERNEL_NAME = "vmlinuz"
INITRAMFS_NAME = "initramfs.cpio"


def read(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path``, or None if absent, unreadable or of another format."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        return None
    return data


def write(path: Path, data: dict[str, Any]) -> None:
    body = {"format": MANIFEST_FORMAT, **data}
    write_atomic(path, json_bytes(body, sort_keys=True))


def write_image(
    path: Path,
    recipe: Recipe,
    pins: Lock,
    segments: tuple[Segment, Segment, Segment],
    *,
    kernel_size: int,
    initramfs: bytes,
    keys: dict[str, str],
) -> None:
    """The manifest of a finished build (``segments``: base, stdlib, guest), written last."""
    base, std, guest = segments
    write(
        path,
        {
            "arch": recipe.arch,
            "keys": keys,
            "packages": [
                {
                    "name": p.name,
                    "version": p.version,
                    "sha256": p.sha256,
                    "filename": p.filename,
                }
                for p in sorted(pins.pins, key=lambda p: p.name)
            ],
            "kernel": {
                "package": pins.kernel,
                "release": base.info.get("kernel_release"),
                "image": base.info.get("kernel_image"),
                "modules": base.info.get("modules"),
            },
            "libraries": sorted(std.libraries),
            "stdlib": std.info,
            "guest": guest.info,
            "init_flags": recipe.python.init_flags,
            "files": {
                KERNEL_NAME: {"size": kernel_size, "sha256": base.info.get("kernel_sha256")},
                INITRAMFS_NAME: {
                    "size": len(initramfs),
                    "sha256": hashlib.sha256(initramfs).hexdigest(),
                },
            },
        },
    )


def output_problems(data: dict[str, Any], directory: Path) -> list[str]:
    """Why the outputs in ``directory`` are not those the manifest describes ([] if they are).

    Each listed file must exist with the recorded size and sha256: a truncated, damaged or
    half-copied kernel or initramfs would otherwise boot into a silent or panicking guest.
    Hashing both outputs takes about 0.1 s.
    """
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        return ["the manifest lists no output files"]
    problems = []
    for name, meta in sorted(files.items()):
        path = directory / name
        try:
            size, digest = meta["size"], meta["sha256"]
            actual = path.stat().st_size
            if actual != size:
                problems.append(f"{name} is {actual} bytes, the manifest says {size}")
            elif sha256_file(path) != digest:
                problems.append(f"{name} does not match its sha256 in the manifest")
        except FileNotFoundError:
            problems.append(f"{name} is missing")
        except (OSError, KeyError, TypeError) as exc:
            problems.append(f"{name} cannot be checked: {exc}")
    return problems


def outputs_intact(data: dict[str, Any], directory: Path) -> bool:
    """Every output the manifest lists exists with the recorded size and sha256."""
    return not output_problems(data, directory)
