"""``crash-states``: record guest runs, rebuild every crash state, judge each, boot a sample.

::

    for each seed that falls to this shard:
        record   blank disk -> VM (blklogwrites) writes N batches -> disk.img + writes.log
        check    the log replayed on zeros == disk.img; its newest key == the console's issued
        judge    crash_states(recording, depth, seed): host statefs verdict per state
        boot     a seeded sample of those states in the VM: the guest's head == the host's

The generator is the host crash simulator's (:func:`harness.crashsim.crash_states`), the
commit points come from the workload (:mod:`harness.crashlog.history`), the verdict from the
host's statefs (:mod:`harness.crashlog.judge`).

``--from-log DIR`` skips the recording and re-judges a kept run (its ``writes.log``,
``disk.img`` and ``run.json``): how a failure is reproduced without a VM, and how the tests
judge a log they wrote themselves. A run's directory is kept whenever it failed.
"""

from __future__ import annotations

import json
import random
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.crashlog.history import GuestHistory, recording_from_log
from harness.crashlog.judge import Verdict, judge
from harness.crashlog.logformat import LogFormatError, read_log
from harness.crashlog.report import Failure, Report, RunReport, kind_of
from harness.crashsim import CrashState, Depth, crash_states
from harness.errors import ConfigError
from harness.powercut.campaign import nonce_for
from harness.shard import falls_to

#: The default run: enough batches for >= 10,000 states and a few compactions.
DEFAULT_WRITES = 450
#: The smallest disk statefsd formats (two regions of four largest records): it compacts
#: about every 180 batches of the workload, every few seconds.
DEFAULT_DISK_KIB = 640
SECTOR_SIZE = 512
#: Failures kept per run (each with an image file); the count goes on.
MAX_KEPT_FAILURES = 10
RUN_JSON = "run.json"

Say = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    """The command's flags."""

    seed: int = 0
    runs: int = 1
    writes: int = DEFAULT_WRITES
    disk_kib: int = DEFAULT_DISK_KIB
    depth: int = 1
    boots: int = 1
    shard: tuple[int, int] = (1, 1)
    accel: str = "auto"
    multiplier: float = 1.0
    from_log: str = ""

    def __post_init__(self) -> None:
        if self.runs < 1 or self.writes < 1 or self.boots < 0 or self.depth < 1:
            raise ConfigError("--runs, --writes, --depth must be >= 1 and --boots >= 0")
        if self.disk_kib * 1024 % SECTOR_SIZE:
            raise ConfigError(f"--disk-kib {self.disk_kib} is not a whole number of sectors")

    def boots_for(self, index: int) -> int:
        """Boots of run ``index``: the total spread over the runs, the first ones one more."""
        return self.boots // self.runs + (index < self.boots % self.runs)

    def flags(self) -> list[str]:
        """This run's flags, as the command line that repeats it (without --shard)."""
        defaults = Options()
        args = []
        for name in ("seed", "runs", "writes", "disk_kib", "depth", "boots"):
            value = getattr(self, name)
            if value != getattr(defaults, name) or name in ("seed", "boots"):
                args += [f"--{name.replace('_', '-')}", str(value)]
        return args

    def command(self, seed: int, from_log: str) -> str:
        """The command that judges ``from_log`` again exactly as this run did."""
        args = ["python", "-m", "harness", "crash-states", "--from-log", from_log]
        args += ["--seed", str(seed), "--depth", str(self.depth), "--boots", "0"]
        return shlex.join(args)


class CrashStatesRun:
    """One invocation: the seeds of this shard, each in ``run_dir/seed-<n>``."""

    def __init__(self, image: Any, options: Options, run_dir: Path, say: Say = print) -> None:
        self.image = image
        self.options = options
        self.run_dir = run_dir
        self.say = say

    def run(self) -> Report:
        options = self.options
        started = time.monotonic()
        report = Report(shard=options.shard, options=asdict(options))
        report.options["shard"] = list(options.shard)
        for index in range(options.runs):
            if not falls_to(index, options.shard):
                continue
            seed = options.seed + index
            directory = (
                Path(options.from_log) if options.from_log else self.run_dir / f"seed-{seed}"
            )
            run = RunReport(seed=seed, nonce=nonce_for(seed), directory=str(directory))
            report.runs.append(run)
            self._one(run, directory, options.boots_for(index), report.failures)
            if run.passed and not options.from_log:
                shutil.rmtree(directory, ignore_errors=True)
        report.seconds = time.monotonic() - started
        return report

    # -- one guest run ------------------------------------------------------------------------
    def _one(self, run: RunReport, directory: Path, boots: int, failures: list[Failure]) -> None:
        try:
            history = self._history(run, directory)
        except (LogFormatError, ConfigError, OSError) as exc:
            run.error = str(exc)
            return
        if history is None:
            return
        self.say(
            f"seed {run.seed}: {run.writes} batches, {run.entries} log entries, "
            f"{run.compactions} compactions; judging"
        )
        sample = self._judge(run, history, boots, failures, directory)
        if sample and not run.failures:
            self._boot(run, history, sample, failures, directory)

    def _history(self, run: RunReport, directory: Path) -> GuestHistory | None:
        """Record (or load) the run and check the log against the console and the disk."""
        disk, log_path = directory / "disk.img", directory / "writes.log"
        if self.options.from_log:
            info = json.loads((directory / RUN_JSON).read_text())
            run.nonce = info["nonce"]
        else:
            directory.mkdir(parents=True, exist_ok=True)
            with open(disk, "wb") as handle:
                handle.truncate(self.options.disk_kib * 1024)
            from harness.crashlog.guestrun import record_run

            started = time.monotonic()
            guest = record_run(
                self.image,
                disk,
                log_path,
                nonce=run.nonce,
                writes=self.options.writes,
                run_dir=directory,
                accel=self.options.accel,
                multiplier=self.options.multiplier,
            )
            run.record_seconds = time.monotonic() - started
            info = {"nonce": run.nonce, "issued": guest.issued, "acked": guest.acked}
            (directory / RUN_JSON).write_text(json.dumps(info) + "\n")
            if guest.failure:
                run.error = f"the recorded boot failed: {guest.failure}\n{guest.excerpt}"
                return None
        image = disk.read_bytes()
        log = read_log(log_path, device_sectors=len(image) // SECTOR_SIZE)
        if log.sector_size != SECTOR_SIZE:
            raise LogFormatError(f"{log_path}: log sectors of {log.sector_size}, want 512")
        history = recording_from_log(log, len(image) // SECTOR_SIZE, acked_end=info["acked"])
        counts = log.counts()
        run.writes, run.entries = info["acked"] or 0, counts["entries"]
        run.flushes, run.sectors = counts["flushes"], counts["sectors"]
        run.compactions = history.compactions
        run.windows = len(history.recording.windows())
        if history.final_image != image:
            run.error = f"{log_path} replayed on a blank disk is not {disk}: the log is incomplete"
        elif history.issued != info["issued"]:
            run.error = (
                f"the log's newest write is {history.issued}, the console issued {info['issued']}"
            )
        return None if run.error else history

    def _judge(
        self,
        run: RunReport,
        history: GuestHistory,
        boots: int,
        failures: list[Failure],
        directory: Path,
    ) -> list[tuple[CrashState, Verdict]]:
        """Judge every state; return the seeded boot sample (reservoir over passing states)."""
        started = time.monotonic()
        rng = random.Random(f"{run.seed}:boot-sample")
        sample: list[tuple[CrashState, Verdict]] = []
        kinds = dict.fromkeys(("prefix", "subset", "torn call", "torn sector"), 0)
        depth = Depth.at(self.options.depth)
        for state in crash_states(history.recording, depth, seed=run.seed):
            allowed = history.allowed_heads(state.allowed)
            verdict = judge(state, SECTOR_SIZE, run.nonce, allowed)
            run.judged += 1
            kinds[kind_of(state.label)] += 1
            if not verdict.passed:
                run.failures += 1
                if run.failures <= MAX_KEPT_FAILURES:
                    failures.append(self._failure(run, state, verdict.problem, directory))
                continue
            if len(sample) < boots:
                sample.append((state, verdict))
            elif boots:
                slot = rng.randrange(run.judged)
                if slot < boots:
                    sample[slot] = (state, verdict)
        run.kinds = kinds
        run.judge_seconds = time.monotonic() - started
        return sample

    def _failure(self, run: RunReport, state: CrashState, problem: str, directory: Path) -> Failure:
        number = run.failures
        image = directory / f"failed-{number}.img"
        image.write_bytes(state.image(SECTOR_SIZE))
        (directory / f"failed-{number}.txt").write_text(f"{state.label}\n{problem}\n")
        command = self.options.command(run.seed, str(directory))
        return Failure(run.seed, state.label, problem, str(image), command)

    def _boot(
        self,
        run: RunReport,
        history: GuestHistory,
        sample: list[tuple[CrashState, Verdict]],
        failures: list[Failure],
        directory: Path,
    ) -> None:
        from harness.crashlog.guestrun import boot_state

        started = time.monotonic()
        for number, (state, verdict) in enumerate(sample, 1):
            disk = directory / f"boot-{number}.img"
            disk.write_bytes(state.image(SECTOR_SIZE))
            guest = boot_state(
                self.image,
                disk,
                nonce=run.nonce,
                name=f"boot-{number}",
                run_dir=directory,
                accel=self.options.accel,
                multiplier=self.options.multiplier,
            )
            run.booted += 1
            problem = ""
            if guest.failure:
                problem = f"the guest's recovery failed where the host's passed: {guest.failure}"
            elif guest.head != verdict.head:
                problem = f"the guest recovered head {guest.head}, the host {verdict.head}"
            self.say(f"seed {run.seed}: booted {state.label}: guest head {guest.head}")
            if problem:
                run.failures += 1
                disk.write_bytes(state.image(SECTOR_SIZE))  # the boot rewrote it
                failure = Failure(run.seed, state.label, problem, str(disk))
                failure.command = self.options.command(run.seed, str(directory))
                failures.append(failure)
            else:
                disk.unlink()
        run.boot_seconds = time.monotonic() - started
