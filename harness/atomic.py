"""Write a file so that a reader sees the old contents whole or the new contents whole.

Run summaries (``run.json``, ``powercut.json``), image manifests and caches are read by other
processes (``markers``, CI, the next build) while a run may be killed at any moment: each is
written to a temporary sibling and renamed over the target, which POSIX makes atomic. No
fsync: what this protects against is the writer being killed on a host that keeps running.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through ``.<name>.tmp-<pid>`` and a rename; returns ``path``.

    The parent directory is created; a failed write leaves no temporary file behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def json_bytes(document: Any, *, indent: int | None = 2, **dumps: Any) -> bytes:
    """``document`` as UTF-8 JSON, with a trailing newline when indented (one line each)."""
    text = json.dumps(document, indent=indent, **dumps)
    return (text + ("\n" if indent is not None else "")).encode("utf-8")


def write_json(path: Path, document: Any, *, indent: int | None = 2, **dumps: Any) -> Path:
    """``document`` as JSON (:func:`json_bytes`), written atomically; returns ``path``."""
    return write_bytes(path, json_bytes(document, indent=indent, **dumps))
