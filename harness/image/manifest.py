"""``build/images/<arch>/manifest``: what an image was built from, and what it contains.

JSON, written last and atomically by every build: the pinned packages (name, version, sha256),
the kernel release and modules, the kept stdlib, the sha256 of each output file, and the keys
the next ``ensure_image`` compares to decide whether anything must be rebuilt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.image.cache import write_atomic

MANIFEST_FORMAT = 1
MANIFEST_NAME = "manifest"


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
    write_atomic(path, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())


def outputs_intact(data: dict[str, Any], directory: Path) -> bool:
    """Every output the manifest lists exists with the recorded size (cheap: no hashing)."""
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        return False
    for name, meta in files.items():
        path = directory / name
        try:
            if path.stat().st_size != meta["size"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True
