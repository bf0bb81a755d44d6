"""Result files: ``bench/results/<name>-<date>.json`` (kept in git) and PNGs (ignored)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from harness import atomic

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


def write_json(directory: Path, name: str, document: dict[str, object]) -> Path:
    """Write ``<name>-<date>.json`` atomically; a second run on the same day replaces it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{stamp()}.json"
    return atomic.write_json(path, document, default=str)


def latest(directory: Path, name: str) -> dict[str, object] | None:
    """The newest ``<name>-<date>.json`` in ``directory``, parsed, or None."""
    files = sorted(directory.glob(f"{name}-[0-9]*.json"))
    if not files:
        return None
    return json.loads(files[-1].read_text(encoding="utf-8"))
