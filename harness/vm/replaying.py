"""Reading a recorded run back: check the record, rebuild a boot's replay config, compare.

A replay is only worth something if it starts from exactly what the record started from, so
:func:`check_boot` verifies, before QEMU is launched, the SHA-256 of every file the boot needs
(the replay log, the recorded console, the kernel, the initramfs, the base disk and every
overlay below the boot's own) against ``run.json``'s ``record`` section. A missing file or a
hash that differs is a :class:`RecordError` naming the file and both hashes.

:func:`compare_console` is pure: the first differing byte, its line, and the two lines there.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.artifacts import RUN_SUMMARY
from harness.errors import HarnessError
from harness.vm.config import DiskSpec, MachineConfig
from harness.vm.overlays import sha256_file
from harness.vm.record import RecordReplay
from harness.vm.recording import RECORD_VERSION, REPLAYED_FIELDS


class RecordError(HarnessError):
    """The run has no usable record: not recorded, a file missing, or a hash that differs."""


@dataclass(frozen=True)
class BootRecord:
    """One recorded boot, its files resolved against the run directory."""

    run_dir: Path
    number: int
    entry: dict[str, Any]
    record: dict[str, Any]

    def path(self, ref: dict[str, Any] | str) -> Path:
        name = ref["path"] if isinstance(ref, dict) else ref
        path = Path(name)
        return path if path.is_absolute() else self.run_dir / path

    @property
    def rrfile(self) -> Path:
        return self.path(self.entry["rrfile"])

    @property
    def console(self) -> Path:
        return self.path(self.entry["console"])

    @property
    def backing(self) -> Path:
        return self.path(self.entry["backing"])

    @property
    def backing_format(self) -> str:
        return "qcow2" if self.number != self._first_number() else self.record["base"]["format"]

    def _first_number(self) -> int:
        return int(self.record["boots"][0]["number"])

    def chain(self) -> list[tuple[str, dict[str, Any]]]:
        """Every file this boot's replay reads, with what the record says about it."""
        files = [
            (f"boot {self.number} replay log", self.entry["rrfile"]),
            (f"boot {self.number} recorded console", self.entry["console"]),
            ("kernel", self.record["kernel"]),
            ("initramfs", self.record["initramfs"]),
            ("base disk", self.record["base"]),
        ]
        for earlier in self.record["boots"]:
            if earlier["number"] == self.number:
                break
            files.append((f"boot {earlier['number']} disk overlay", earlier["overlay"]))
        return files

    def replay_config(
        self, scratch: Path, *, gdb_port: int | None = None, qemu_binary: str | None = None
    ) -> MachineConfig:
        """The boot's recorded machine, replaying its log on a scratch overlay."""
        fields = {name: self.entry["config"][name] for name in REPLAYED_FIELDS}
        for name in ("kernel_args", "devices", "extra_args"):
            fields[name] = tuple(fields[name])
        if qemu_binary is not None:
            fields["qemu_binary"] = qemu_binary
        extra = fields["extra_args"]
        if gdb_port is not None:
            extra = (*extra, "-gdb", f"tcp:127.0.0.1:{gdb_port}")
        fields["extra_args"] = extra
        return MachineConfig(
            **fields,
            kernel=self.path(self.record["kernel"]),
            initramfs=self.path(self.record["initramfs"]),
            disks=(DiskSpec(str(scratch), format="qcow2", cache=self.entry["cache"]),),
            accel="tcg",
            start_paused=gdb_port is not None,
            record=RecordReplay("replay", self.rrfile, self.record["icount"]),
        )


def load_boot(run_dir: Path, number: int | None = None) -> BootRecord:
    """Boot ``number`` (default: the first that failed, else the first) of a recorded run."""
    summary_path = run_dir / RUN_SUMMARY
    if not summary_path.is_file():
        raise RecordError(f"{run_dir} has no {RUN_SUMMARY}: not a run directory")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecordError(f"{summary_path} is not readable JSON: {exc}") from exc
    record = summary.get("record")
    if not isinstance(record, dict):
        raise RecordError(
            f"run {run_dir.name} was not recorded: run it with `python -m harness run --record`"
        )
    if record.get("version") != RECORD_VERSION:
        raise RecordError(f"record version {record.get('version')!r}, expected {RECORD_VERSION}")
    boots = {int(entry["number"]): entry for entry in record.get("boots", [])}
    if not boots:
        raise RecordError(f"run {run_dir.name} recorded no boot (QEMU never started?)")
    if number is None:
        outcomes = {int(b["number"]): b.get("outcome") for b in summary.get("boots", [])}
        failed = [n for n in boots if outcomes.get(n) not in (None, "passed")]
        number = failed[0] if failed else min(boots)
    if number not in boots:
        raise RecordError(
            f"boot {number} is not in the record of {run_dir.name} "
            f"(recorded: {', '.join(map(str, sorted(boots)))})"
        )
    entry = boots[number]
    for key in ("rrfile", "console"):
        if entry.get(key) is None:
            raise RecordError(f"boot {number} left no {key} (QEMU did not get to run it)")
    return BootRecord(run_dir, number, entry, record)


def check_boot(boot: BootRecord) -> list[str]:
    """Verify every file the replay reads; return one line per file checked.

    Raises :class:`RecordError` on the first missing file or differing hash.
    """
    checked = []
    for what, ref in boot.chain():
        path = boot.path(ref)
        if not path.is_file():
            raise RecordError(f"record incomplete: {what} {path} is missing")
        size = path.stat().st_size
        if size != ref["bytes"]:
            raise RecordError(
                f"record damaged: {what} {path} has {size} bytes, the record says {ref['bytes']}"
            )
        digest = sha256_file(path)
        if digest != ref["sha256"]:
            raise RecordError(
                f"record damaged: {what} {path} has sha256 {digest}, "
                f"the record says {ref['sha256']}"
            )
        checked.append(f"{what}: {os.fspath(path)} ok ({size} bytes)")
    return checked


@dataclass(frozen=True)
class Divergence:
    """Where the replayed console first differs from the recorded one."""

    offset: int
    line: int
    recorded: str
    replayed: str

    def describe(self) -> str:
        return (
            f"replay: console diverges at byte {self.offset} (line {self.line})\n"
            f"  recorded: {self.recorded}\n"
            f"  replayed: {self.replayed}"
        )


def _line_at(data: bytes, offset: int) -> str:
    if offset >= len(data):
        return "<end of console>"
    start = data.rfind(b"\n", 0, offset) + 1
    end = data.find(b"\n", offset)
    text = data[start : end if end != -1 else len(data)].decode("utf-8", "replace")
    return repr(text.rstrip("\r")[:200])


def compare_console(recorded: bytes, replayed: bytes) -> Divergence | None:
    """None if the two are byte for byte the same, else the first difference."""
    if recorded == replayed:
        return None
    limit = min(len(recorded), len(replayed))
    offset = next((i for i in range(limit) if recorded[i] != replayed[i]), limit)
    line = recorded.count(b"\n", 0, offset) + 1
    return Divergence(offset, line, _line_at(recorded, offset), _line_at(replayed, offset))
