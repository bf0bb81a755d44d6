"""Where and under what load a figure was measured.

A benchmark figure without its context is noise: this machine is shared (other engineers run
tests on the same 2 cores), so every figure carries the load it was measured under, and the
report names the filesystem, since ``fdatasync`` costs what the filesystem and the disk under
it make it cost.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Load:
    """System load around one measurement: ``loadavg1`` from /proc/loadavg and ``busy``, the
    fraction of all CPUs' time spent outside idle/iowait over a short window (the 1-minute
    average reacts too slowly to tell whether *this* second was quiet)."""

    loadavg1: float
    busy: float

    def label(self) -> str:
        busy = "?" if self.busy != self.busy else f"{self.busy * 100:.0f}%"
        return f"load {self.loadavg1:.2f}, busy {busy}"


def _cpu_times() -> tuple[int, int]:
    """(total, idle) jiffies over all CPUs, idle including iowait."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields), idle


def loadavg1() -> float:
    with open("/proc/loadavg", encoding="ascii") as handle:
        return float(handle.read().split()[0])


#: Seconds :func:`sample_load` watches the CPUs by default (0 in toy runs: no sleeping).
_default_window = 0.2


def set_sample_window(seconds: float) -> None:
    """Change how long :func:`sample_load` watches by default (the smoke test uses 0)."""
    global _default_window
    _default_window = seconds


def sample_load(window: float | None = None) -> Load:
    """The load right now: loadavg plus CPU busy fraction over ``window`` seconds."""
    total0, idle0 = _cpu_times()
    time.sleep(_default_window if window is None else window)
    total1, idle1 = _cpu_times()
    spent = total1 - total0
    if spent < 4:  # under a few jiffies the fraction means nothing (a zero-length window)
        return Load(loadavg1(), float("nan"))
    return Load(loadavg1(), 1.0 - (idle1 - idle0) / spent)


def wait_for_quiet(max_busy: float, timeout: float, *, say=print) -> Load:
    """Wait up to ``timeout`` seconds for CPU busy below ``max_busy``; return the last sample.

    Measuring while another test run owns the CPUs mostly measures that test run, so the
    caller can wait; after ``timeout`` it measures anyway and the load is on record.
    """
    deadline = time.monotonic() + timeout
    load = sample_load(0.5)
    announced = False
    while load.busy > max_busy and time.monotonic() < deadline:
        if not announced:
            say(f"  (waiting up to {timeout:.0f} s for a quiet machine: {load.label()})")
            announced = True
        time.sleep(2.0)
        load = sample_load(0.5)
    return load


def filesystem_of(path: Path) -> dict[str, str]:
    """Mount point, device, type and options of the filesystem holding ``path``.

    ``stat -f`` names the family (it says ``ext2/ext3`` for ext4); /proc/mounts has the exact
    type and options (``discard``, ``data=``...), which change what ``fdatasync`` costs.
    """
    real = os.path.realpath(path)
    best: tuple[str, str, str, str] = ("/", "?", "?", "")
    with open("/proc/mounts", encoding="utf-8") as handle:
        for line in handle:
            device, mount, fstype, options, *_ = line.split()
            inside = real == mount or real.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best[0]):
                best = (mount, device, fstype, options)
    try:
        stat_f = subprocess.run(
            ["stat", "-f", "-c", "%T", real], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        stat_f = ""
    mount, device, fstype, options = best
    return {
        "path": real,
        "mount": mount,
        "device": device,
        "type": fstype,
        "options": options,
        "stat_f": stat_f,
    }


def _meminfo_gib() -> float:
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    return 0.0


def _os_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _git(*args: str) -> str:
    """Read-only git query (the commit a figure belongs to); empty when git is unavailable."""
    try:
        done = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent.parent,
        )
    except OSError:
        return ""
    return done.stdout.strip()


@dataclass(frozen=True)
class Machine:
    """The machine and code a result file belongs to."""

    cpus: int
    memory_gib: float
    os: str
    kernel: str
    python: str
    cpu_model: str
    commit: str
    dirty_files: int

    def label(self) -> str:
        return (
            f"{self.cpus} cores ({self.cpu_model}), {self.memory_gib:.0f} GiB, {self.os}, "
            f"Linux {self.kernel}, Python {self.python}"
        )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def describe_machine() -> Machine:
    status = _git("status", "--porcelain", "--untracked-files=no")
    return Machine(
        cpus=os.cpu_count() or 0,
        memory_gib=round(_meminfo_gib(), 1),
        os=_os_name(),
        kernel=platform.release(),
        python=platform.python_version(),
        cpu_model=_cpu_model(),
        commit=_git("rev-parse", "--short", "HEAD"),
        dirty_files=len([line for line in status.splitlines() if line.strip()]),
    )
