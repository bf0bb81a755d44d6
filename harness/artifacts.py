"""Where each run and each VM keeps its evidence.

Layout (one directory per VM, never shared, so pytest-xdist workers cannot collide)::

    build/runs/<run id>/            one `python -m harness run` (or one pytest session/test)
        run.json                    summary: nonce, boots, outcome, markers
        boot1/                      one QEMU process
            uart.log                every console byte, as received
            uart.timestamps         "<seconds since launch> <line>" per console line
            qemu.argv               the command line, shell-quoted (copy-paste to reproduce)
            qemu.stderr             QEMU's own messages (timestamped by -msg timestamp=on)
            qmp.jsonl               QMP commands, replies and events with host times
        boot2/ ...

Sockets do not live here: unix socket paths are limited to 108 bytes, so each VM gets a
private ``mkdtemp`` directory for them (see :mod:`harness.vm.machine`).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

RUNS_SUBDIR = "runs"

UART_LOG = "uart.log"
UART_TIMESTAMPS = "uart.timestamps"
QEMU_ARGV = "qemu.argv"
QEMU_STDERR = "qemu.stderr"
QMP_LOG = "qmp.jsonl"
RUN_SUMMARY = "run.json"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def default_build_dir() -> Path:
    """``$SQ_BUILD_DIR`` if set, else ``build/`` at the repository root."""
    override = os.environ.get("SQ_BUILD_DIR")
    return Path(override) if override else repo_root() / "build"


def default_runs_dir() -> Path:
    return default_build_dir() / RUNS_SUBDIR


def safe_name(text: str, *, limit: int = 80) -> str:
    """A file-name-safe version of ``text`` (a pytest node id, a VM name)."""
    cleaned = _UNSAFE.sub("_", text).strip("._") or "x"
    return cleaned[:limit]


def new_run_id() -> str:
    """Sortable by time, unique across processes: ``20250101-120000-4242-ab12``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{os.getpid()}-{secrets.token_hex(2)}"


def create_unique_dir(parent: Path, name: str) -> Path:
    """Create ``parent/name`` (or ``name-2``, ``name-3``...) atomically; never reuse one."""
    parent.mkdir(parents=True, exist_ok=True)
    base = safe_name(name)
    for attempt in range(1, 10_000):
        candidate = parent / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free directory name for {base!r} under {parent}")


def latest_run(runs_dir: Path | None = None) -> Path | None:
    """The most recent run directory that has a summary or a boot in it."""
    runs_dir = runs_dir or default_runs_dir()
    if not runs_dir.is_dir():
        return None
    candidates = [p for p in runs_dir.iterdir() if p.is_dir() and any(p.glob("*/" + UART_LOG))]
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


@dataclass(frozen=True)
class VmArtifacts:
    """The files of one VM, in its own directory."""

    path: Path

    @property
    def uart_log(self) -> Path:
        return self.path / UART_LOG

    @property
    def uart_timestamps(self) -> Path:
        return self.path / UART_TIMESTAMPS

    @property
    def qemu_argv(self) -> Path:
        return self.path / QEMU_ARGV

    @property
    def qemu_stderr(self) -> Path:
        return self.path / QEMU_STDERR

    @property
    def qmp_log(self) -> Path:
        return self.path / QMP_LOG

    @classmethod
    def create(cls, parent: Path, name: str) -> VmArtifacts:
        return cls(create_unique_dir(parent, name))
