"""A power-cut campaign: boot, write, cut, resolve, boot again on the same disk, judge.

::

    boot 1: recover (empty) -> write ... CUT -> resolve -+
    boot 2: recover head=m2 (judges cycle 1) -> write ... CUT -> resolve -+
    ...                                                                    |
    boot N+1: recover head=m (judges cycle N) -> power off <---------------+

Each boot is one nbdkit (:class:`~harness.powercut.server.DiskServer`) and one QEMU on the same
backing file, with ``sq.mode=powercut sq.boot=<n> sq.nonce=<nonce>``; the last boot only
checks (``sq.writes=0``) and must power off by itself. The cut (:mod:`harness.powercut.cut`) comes
a seeded random delay after the boot's recovery marker, while the guest writes under load; the
pending writes then get a seeded fate (:mod:`harness.powercut.fates`). The seed fixes the cut
delays and the fate decisions; what the guest had written by then still varies with the
host's timing, so a campaign is reproducible in its choices, not byte for byte.

The campaign stops at the first cycle that does not pass: the disk and the artifacts are the
evidence. Whatever happens, no QEMU and no nbdkit outlive :meth:`Campaign.run` (``with``
blocks, then the atexit hooks, then pdeathsig).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.contract.matcher import ProgressCallback
from harness.contract.spec import Contract
from harness.deadline import Deadline, parse_multiplier
from harness.errors import ConfigError
from harness.powercut.cut import TRIGGER_WAIT, await_early, await_trigger, cut_power, plan_cut
from harness.powercut.fates import FATES, Resolution, resolve
from harness.powercut.report import DISK_AT_BOOT, CampaignResult, CycleResult, write_json
from harness.powercut.server import DiskServer
from harness.powercut.triggers import (
    COMPACTION_WAIT,
    EARLY_TRIGGERS,
    TRIGGERS,
    cache_written,
    trigger_for,
    writing_condition,
)
from harness.powercut.verdict import Judgement, Verdict, judge
from harness.powercut.watch import BootWatch, WriterProgress, boot_contract
from harness.shard import falls_to
from harness.vm.accel import AccelChoice
from harness.vm.config import Accel, MachineConfig
from harness.vm.disks import create_disk
from harness.vm.machine import Machine

log = logging.getLogger(__name__)

DEFAULT_CYCLES = 20
#: Large batches: values up to 16 KiB, requests of one page, so one batch is 1-5 requests.
DEFAULT_VALUE_MAX = 16384
DEFAULT_REQUEST_KIB = 4
DEFAULT_DISK_MIB = 2
#: The cut comes this many seconds (uniform) after the boot's recovery marker.
DEFAULT_CUT_WINDOW = (0.05, 3.0)
RECOVERY_TIMEOUT = 60.0
POWEROFF_TIMEOUT = 30.0
#: Extra time, beyond the cut delay, for the console to reach the cut moment.
CUT_SLACK = 30.0
TAIL_LINES = 12


@dataclass(frozen=True)
class CampaignOptions:
    """How to run a campaign (the CLI's flags). Timeouts are scaled by ``multiplier``."""

    cycles: int = DEFAULT_CYCLES
    seed: int = 0
    disk_mib: int = DEFAULT_DISK_MIB
    cut_window: tuple[float, float] = DEFAULT_CUT_WINDOW
    fates: tuple[str, ...] = FATES
    recovery_timeout: float = RECOVERY_TIMEOUT
    poweroff_timeout: float = POWEROFF_TIMEOUT
    multiplier: float = 1.0
    accel: Accel = "auto"
    keep_artifacts: bool = False
    nbdkit_verbose: bool = False
    value_max: int = DEFAULT_VALUE_MAX
    request_kib: int = DEFAULT_REQUEST_KIB
    shard: tuple[int, int] = (1, 1)
    triggers: tuple[str, ...] = ()  # empty: the schedule (harness.powercut.triggers)

    @property
    def own_cycles(self) -> list[int]:
        """The campaign's cycle numbers (1-based) that fall to this shard, in order."""
        return [n for n in range(1, self.cycles + 1) if falls_to(n - 1, self.shard)]

    def __post_init__(self) -> None:
        if self.cycles < 1:
            raise ConfigError(f"cycles must be at least 1, got {self.cycles}")
        if self.disk_mib < 1:
            raise ConfigError(f"the disk must be at least 1 MiB, got {self.disk_mib}")
        low, high = self.cut_window
        if not 0 <= low <= high:
            raise ConfigError(f"cut window must be 0 <= min <= max, got {self.cut_window}")
        if not self.fates or set(self.fates) - set(FATES):
            raise ConfigError(f"fates must be among {FATES}, got {self.fates}")
        if not 16 <= self.value_max <= 65536 or not 4 <= self.request_kib <= 1024:
            raise ConfigError("value max must be 16..65536 bytes, request size 4..1024 KiB")
        if set(self.triggers) - set(TRIGGERS):
            raise ConfigError(f"triggers must be among {TRIGGERS}, got {self.triggers}")
        if not self.own_cycles:
            raise ConfigError(f"no cycle of {self.cycles} falls to shard {self.shard}")
        parse_multiplier(self.multiplier)  # raises ConfigError outside the one bound


@dataclass
class BootOutcome:
    """What one boot showed and what its cut left (the campaign's working record)."""

    number: int
    trigger: str = ""
    early: bool = False  # cut before its recovery marker (format, recovery)
    start: int | None = None
    recovery_at: float | None = None
    recover_failure: str = ""
    write_failure: str = ""
    progress: WriterProgress = field(default_factory=WriterProgress)
    cut_at: float | None = None
    cut_seq: int | None = None
    cut_trigger: str = ""
    resolution: Resolution | None = None
    seconds: float = 0.0
    artifacts: str = ""
    tail: str = ""
    excerpt: str = ""
    replayed: int | None = None
    replay_tail: str = ""


def nonce_for(seed: int) -> str:
    """The run's ``sq.nonce`` from its seed: the guest derives every value from it."""
    return hashlib.sha256(f"statefs-qemu powercut {seed}".encode()).hexdigest()[:16]


class Campaign:
    """Run the cycles of one campaign in ``run_dir`` (see the module docstring).

    Args:
        image: the guest image (:func:`harness.image.ensure_image`).
        options: cycles, seed, disk size, cut window, fates, timeouts.
        run_dir: an empty directory for the disk, the cache state and every boot's artifacts.
        on_cycle: called with each cycle's result as soon as it is judged (live table).
        on_event: marker events of every boot (live progress).
    """

    def __init__(
        self,
        image: Any,
        options: CampaignOptions,
        *,
        run_dir: Path,
        on_cycle: Callable[[CycleResult], None] | None = None,
        on_event: ProgressCallback | None = None,
    ) -> None:
        self.image = image
        self.options = options
        self.run_dir = run_dir
        self.on_cycle = on_cycle
        self.on_event = on_event
        self.contract = Contract.load()
        self.nonce = nonce_for(options.seed)
        self.disk = run_dir / "disk.img"
        self.state_dir = run_dir / "cache"
        self._accel: AccelChoice | None = None

    def run(self) -> CampaignResult:
        options = self.options
        started = time.monotonic()
        own = options.own_cycles
        result = CampaignResult(self.run_dir, options.seed, self.nonce, len(own))
        result.shard = options.shard
        create_disk(self.disk, options.disk_mib)
        awaiting: list[BootOutcome] = []  # cut boots the next recovering boot judges
        writer: BootOutcome | None = None  # the last boot that wrote: its bounds
        try:
            for number in range(1, len(own) + 2):
                final = number == len(own) + 1
                boot = self._boot(number, final=final)
                if boot.early and not boot.write_failure:
                    boot.start = writer.start if writer else 0
                    boot.progress = writer.progress if writer else WriterProgress()
                    awaiting.append(boot)
                    continue
                cycles = [self._cycle(cut, self._judge(cut, boot), boot) for cut in awaiting]
                if not awaiting and boot.recover_failure:
                    reason = f"boot 1 did not recover an empty disk: {boot.recover_failure}"
                    cycles = [self._cycle(boot, Judgement(Verdict.FAIL, reason), None)]
                awaiting = []
                for cycle in cycles:
                    self._record(result, cycle)
                if not all(cycle.passed for cycle in cycles):
                    break
                if boot.write_failure:
                    if final:
                        result.error = f"the checking boot failed: {boot.write_failure}"
                    else:
                        reason = f"boot {number} failed while writing: {boot.write_failure}"
                        self._record(result, self._cycle(boot, Judgement(Verdict.FAIL, reason)))
                    break
                if final and boot.resolution is not None:
                    result.final_pending = boot.resolution.pending
                awaiting, writer = [boot], boot
        finally:
            result.seconds = time.monotonic() - started
            write_json(result, self.describe_options())
        return result

    def describe_options(self) -> dict[str, Any]:
        data = asdict(self.options)
        data["cut_window"] = list(self.options.cut_window)
        data["fates"] = list(self.options.fates)
        data["triggers"] = list(self.options.triggers)
        return data

    def _record(self, result: CampaignResult, cycle: CycleResult) -> None:
        result.cycles.append(cycle)
        log.info("cycle %d: %s %s", cycle.cycle, cycle.verdict.value, cycle.reason)
        if self.on_cycle is not None:
            self.on_cycle(cycle)

    # -- one boot ---------------------------------------------------------------------------
    def _kernel_args(self, number: int, final: bool) -> tuple[str, ...]:
        options = self.options
        args: tuple[str, ...] = ("sq.mode=powercut", f"sq.boot={number}", f"sq.nonce={self.nonce}")
        args += (f"sq.value_max={options.value_max}", f"sq.request_kib={options.request_kib}")
        return (*args, "sq.writes=0") if final else args

    def _trigger(self, number: int) -> str:
        """Boot ``number``'s scheduled trigger. A shard is a campaign of its own on its own
        blank disk, so its schedule starts again (with ``format``) from its own seed."""
        triggers = self.options.triggers
        if triggers:
            return triggers[(number - 1) % len(triggers)]
        return trigger_for(number, self.schedule_seed)

    @property
    def schedule_seed(self) -> int | str:
        """What seeds the schedule, the cut delays and the fates: the campaign's seed, or for
        shard K of N (N > 1) that seed and K, so shards make different choices."""
        index, count = self.options.shard
        return self.options.seed if count == 1 else f"{self.options.seed}:{index}"

    def _boot(self, number: int, *, final: bool) -> BootOutcome:
        options = self.options
        scale = options.multiplier
        started = time.monotonic()
        outcome = BootOutcome(number, trigger="" if final else self._trigger(number))
        # The disk as this boot finds it: if its check fails, this is the evidence (the boot
        # itself may rewrite the disk before it is stopped, statefsd may even format it).
        shutil.copyfile(self.disk, self.run_dir / DISK_AT_BOOT)
        server = DiskServer(
            self.disk,
            self.state_dir,
            log_path=self.run_dir / "nbdkit" / f"boot{number}.log",
            verbose=options.nbdkit_verbose,
        )
        try:
            server.start()
            config = MachineConfig.from_image(
                self.image,
                # QEMU would merge the guest's adjacent requests back into one write.
                disks=(server.disk_spec(device_options=(("request-merging", "off"),)),),
                kernel_args=self._kernel_args(number, final),
                accel=options.accel,
            )
            machine = Machine(
                config, name=f"boot{number}", artifacts_root=self.run_dir, accel=self._accel
            )
            outcome.artifacts = str(machine.artifacts.path)
            with machine:
                self._accel = machine.accel
                contract = boot_contract(self.contract, number, timeout=options.recovery_timeout)
                watch = BootWatch(machine, contract, multiplier=scale, on_event=self.on_event)
                self._watch(number, final, server, machine, watch, outcome)
                cut_power(server, machine)  # a no-op after a cut or a power-off
                watch.drain()
                outcome.start = watch.recovered
                outcome.recovery_at = watch.recovered_at
                outcome.progress = watch.progress
                outcome.replayed, outcome.replay_tail = watch.replay
                outcome.excerpt = watch.excerpt()
                outcome.tail = machine.console_tail(TAIL_LINES)
        finally:
            server.kill()  # already dead after a cut; a clean stop would not flush anyway
        rng = random.Random(f"{self.schedule_seed}:{number}:fate")
        fates = options.fates
        if not final and self._trigger(number + 1) == "recovery":
            # Leave a tail the next boot must seal, so its cut lands on a seal write.
            fates = tuple(fate for fate in fates if fate != "drop") or fates
        outcome.resolution = resolve(self.state_dir, self.disk, rng, fates)
        outcome.seconds = time.monotonic() - started
        return outcome

    def _watch(
        self,
        number: int,
        final: bool,
        server: DiskServer,
        machine: Machine,
        watch: BootWatch,
        outcome: BootOutcome,
    ) -> None:
        """Recovery, then either the cut (a writing boot) or the power-off (the last boot)."""
        options = self.options
        scale = options.multiplier
        recovery = Deadline(options.recovery_timeout * scale, label=f"boot {number} recovery")
        if outcome.trigger in EARLY_TRIGGERS:
            condition = functools.partial(cache_written, self.state_dir)
            if await_early(outcome.trigger, condition, server, watch, recovery):
                outcome.early, outcome.cut_trigger = True, outcome.trigger
                outcome.cut_at = machine.now()
                cut_power(server, machine)
                watch.drain()
                if watch.failed:
                    outcome.write_failure = watch.failure
                return
        if not watch.until_recovered(recovery):
            outcome.recover_failure = watch.failure or "no recovery marker"
            return
        if final:
            if not watch.until_end(Deadline(options.poweroff_timeout * scale, label="power-off")):
                outcome.write_failure = watch.failure or "the guest did not power off"
                return
            machine.wait(Deadline(5.0 * scale, label="QEMU exit after power-off"))
            if machine.exit_info is None or not machine.exit_info.guest_powered_off:
                how = machine.exit_info.describe() if machine.exit_info else "?"
                outcome.write_failure = f"the guest did not power off cleanly: {how}"
            return
        rng = random.Random(f"{self.schedule_seed}:{number}:cut")
        trigger = "time" if outcome.trigger in EARLY_TRIGGERS else outcome.trigger
        plan = plan_cut(rng, options.cut_window, trigger)
        assert watch.recovered_at is not None
        cut_at = watch.recovered_at + plan.delay
        if not watch.until(cut_at, Deadline(plan.delay + CUT_SLACK * scale, label="cut")):
            outcome.write_failure = watch.failure or "the console ended before the cut"
            return
        wait = COMPACTION_WAIT if plan.trigger == "compaction" else TRIGGER_WAIT
        writing = writing_condition(plan.trigger, self.state_dir, self.disk, rng)
        outcome.cut_trigger = await_trigger(
            plan.trigger, writing, server, watch, Deadline(wait * scale)
        )
        if watch.failed or watch.ended:
            outcome.write_failure = watch.failure or "the console ended before the cut"
            return
        outcome.cut_at = machine.now()
        outcome.cut_seq = watch.progress.issued
        cut_power(server, machine)
        watch.drain()
        if watch.failed:
            outcome.write_failure = watch.failure

    # -- verdicts ---------------------------------------------------------------------------
    def _judge(self, cut: BootOutcome, check: BootOutcome) -> Judgement:
        return judge(
            start=cut.start or 0,
            acked=cut.progress.acked,
            issued=cut.progress.issued,
            recovered=check.start,
            guest_failure=check.recover_failure,
        )

    def _cycle(
        self, cut: BootOutcome, judgement: Judgement, check: BootOutcome | None = None
    ) -> CycleResult:
        resolution = cut.resolution
        excerpt = ""
        if not judgement.passed:
            parts = [f"--- boot {cut.number} (cut), last lines ---", cut.tail or "(nothing)"]
            if check is not None:
                parts += [f"--- boot {check.number} (checking) ---", check.excerpt or check.tail]
            elif cut.excerpt:
                parts += ["--- around the failure ---", cut.excerpt]
            excerpt = "\n".join(parts)
        return CycleResult(
            cycle=cut.number,
            seed=self.options.seed,
            verdict=judgement.verdict,
            reason=judgement.reason,
            start=cut.start or 0,
            acked=cut.progress.acked,
            issued=cut.progress.issued,
            recovered=None if check is None else check.start,
            cut_at=cut.cut_at,
            cut_seq=cut.cut_seq,
            cut_trigger=cut.cut_trigger,
            scheduled=cut.trigger,
            fate=resolution.describe() if resolution else "",
            fate_kind=resolution.plan.kind if resolution else "",
            pending=resolution.pending if resolution else 0,
            rolled_back=resolution.flush.rolled_back if resolution else False,
            boot_seconds=cut.seconds,
            recovery_at=cut.recovery_at,
            boot_dir=Path(cut.artifacts).name,
            verify_dir=Path(check.artifacts).name if check else "",
            excerpt=excerpt,
            replay_tail=check.replay_tail if check else "",
            compacted=cut.cut_trigger == "compaction" or _compacted(cut, check),
        )


def _compacted(cut: BootOutcome, check: BootOutcome | None) -> bool:
    """Did the store compact during the cut boot? Its journal only grows between compactions,
    so the next boot replaying fewer records than this one did means it was rewritten."""
    if check is None or check.replayed is None or cut.replayed is None:
        return False
    return check.replayed < cut.replayed


def run_campaign(
    image: Any,
    options: CampaignOptions,
    *,
    run_dir: Path,
    on_cycle: Callable[[CycleResult], None] | None = None,
    on_event: ProgressCallback | None = None,
) -> CampaignResult:
    """Run a campaign in ``run_dir``; remove the directory afterwards if every cycle passed
    and ``options.keep_artifacts`` is false (a failed campaign always keeps its evidence)."""
    result = Campaign(image, options, run_dir=run_dir, on_cycle=on_cycle, on_event=on_event).run()
    if result.passed and not options.keep_artifacts:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result
