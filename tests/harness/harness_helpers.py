"""Helpers shared by the harness tests (imported by name: tests/harness is on sys.path)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TRANSCRIPTS = HERE / "transcripts"

requires_qemu_binary = pytest.mark.skipif(
    shutil.which("qemu-system-aarch64") is None, reason="qemu-system-aarch64 is not installed"
)


def pid_gone(pid: int, *, within: float = 0.0) -> bool:
    """True if no process ``pid`` exists (waiting up to ``within`` seconds for it to go).

    A zombie still answers ``kill(pid, 0)``; the harness reaps what it starts, so a zombie here
    would be a bug too.
    """
    end = time.monotonic() + within
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)


def transcript(name: str) -> str:
    return (TRANSCRIPTS / name).read_text(encoding="utf-8")
