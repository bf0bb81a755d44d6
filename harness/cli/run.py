"""``python -m harness run``: the marker contract, every boot on one disk (what
``scripts/qemu-test.sh`` and CI run). Exit 0 only when every marker of every boot arrived."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.cli.common import (
    EXIT_FAILED,
    EXIT_PASSED,
    add_vm_options,
    duration_arg,
    start_vm_session,
)
from harness.cli.lanes import (
    Lane,
    add_lane_options,
    junit_from_replay,
    junit_from_run,
    resolve_lane,
)
from harness.contract.phases import boots_until_phase, until_phase
from harness.contract.progress import ProgressPrinter
from harness.contract.runner import ContractRunner, RunOptions
from harness.contract.spec import Contract
from harness.diagnosis import FORMAT_FORCE_ARG
from harness.vm.kernel_args import new_nonce, render
from harness.vm.recording import RunRecorder, replay_command


def add_parser(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run the marker contract (every boot)",
        description="Boot the guest once per contract boot on one fresh "
        "disk and check every marker. Exit 0 only on a full contract.",
    )
    add_vm_options(run)
    run.add_argument(
        "--until-marker",
        action="store_true",
        help="stop the last boot as soon as every marker arrived "
        "(RUN_UNTIL_MARKER=1); otherwise wait for the guest's power-off",
    )
    run.add_argument(
        "--timeout",
        type=duration_arg,
        default=None,
        help="deadline for the whole run: 90, 90s, 2m (RUN_TIMEOUT)",
    )
    run.add_argument(
        "--timeline",
        action="store_true",
        help="print each marker's time since launch, per boot, at the end",
    )
    run.add_argument("--console", action="store_true", help="echo the guest console live")
    run.add_argument(
        "--boots",
        type=lambda s: [int(x) for x in s.split(",")],
        default=None,
        help="run only these contract boots, e.g. 1 (default: all)",
    )
    run.add_argument("--nonce", default=None, help="sq.nonce to use (default: random)")
    run.add_argument(
        "--kernel-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more guest kernel argument, repeatable (sq.fail=statefs-persist fails that "
        "selftest step on purpose)",
    )
    run.add_argument(
        "--record",
        action="store_true",
        help="record every boot with QEMU record/replay (TCG, a qcow2 overlay per boot) so "
        "`python -m harness replay RUN --boot N` can replay it exactly",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would run (settings, kernel arguments) and exit",
    )
    add_lane_options(run)
    run.set_defaults(handler=command)


def _dry_run(
    out: ProgressPrinter,
    args: argparse.Namespace,
    contract: Contract,
    boots: list[int],
    nonce: str,
    multiplier: float,
) -> int:
    out.say(f"contract: {contract.source}")
    out.say(f"until phase: {args.until_phase or 'none (every phase)'}")
    out.say(f"junit: {args.junit or 'no'}")
    out.say(f"until marker: {'yes' if args.until_marker else 'no (wait for power-off)'}")
    if args.format_disk:
        out.say(f"format disk: yes (boot {boots[0]} gets {FORMAT_FORCE_ARG})")
    out.say(f"run timeout: {'none' if args.timeout is None else f'{args.timeout:g} s'}")
    out.say(f"timeout multiplier: {multiplier:g}")
    for number in boots:
        spec = contract.for_boot(number)
        if args.until_phase is not None and number == boots[-1]:
            spec = until_phase(spec, args.until_phase)
        args_line = " ".join(render(spec.kernel_args, {"nonce": nonce, "boot": number}))
        out.say(
            f"boot {number}: timeout {spec.timeout * multiplier:g} s, "
            f"{len(spec.required)} required markers, kernel args: {args_line}"
        )
    return EXIT_PASSED


def command(args: argparse.Namespace) -> int:
    out = ProgressPrinter(prefix="")
    lane = resolve_lane(args, Contract.load(args.contract))
    contract = lane.contract
    multiplier = lane.multiplier
    nonce = args.nonce or new_nonce()
    boots = args.boots or list(contract.boot_numbers)
    for number in boots:
        contract.boot(number)  # validates the numbers before anything starts
    if args.until_phase is not None:
        boots = list(boots_until_phase(contract, args.until_phase, boots))
    out.say(_describe_lane(lane))
    if args.dry_run:
        return _dry_run(out, args, contract, boots, nonce, multiplier)

    session = start_vm_session(
        args, out, kernel_args=tuple(args.kernel_arg), **lane.config_overrides()
    )
    run_dir = session.run_dir
    out.say(f"run: {run_dir}  (nonce {nonce}, disk {session.disk})")
    recorder = RunRecorder(run_dir, session.config) if lane.settings.record else None
    if recorder is not None:
        out.say(f"recording every boot into {recorder.dir} (TCG, {recorder.qemu})")

    def on_boot_start(number: int, machine: Any) -> None:
        out.say(f"boot {number}: starting QEMU ({machine.artifacts.path.name})")

    options = RunOptions(
        until_marker=args.until_marker,
        timeout=args.timeout,
        multiplier=multiplier,
        nonce=nonce,
        boots=boots,
        format_disk=args.format_disk,
        until_phase=args.until_phase,
    )
    echo = _echo if args.console else None
    runner = ContractRunner(
        session.config,
        contract,
        run_dir=run_dir,
        options=options,
        progress=out,
        echo=echo,
        on_boot_start=on_boot_start,
        recorder=recorder,
    )
    result = None
    try:
        result = runner.run()
    finally:
        if args.junit is not None:
            if result is not None:
                junit_from_run(
                    args.junit, lane, result.boots, boots, run_name=run_dir.name, nonce=nonce
                )
            else:
                junit_from_replay(args.junit, lane, run_dir, boots)
    for boot in result.boots:
        how = boot.exit.describe() if boot.exit else "QEMU did not start"
        out.say(f"boot {boot.number}: {boot.outcome.value.upper()} - {how} ({boot.accel})")
    if args.timeline:
        for boot in result.boots:
            out.say(f"timeline of boot {boot.number} (seconds since QEMU launch):")
            for row in boot.matcher.timeline():
                out.say(row)
    if not result.passed:
        out.say("")
        out.say(result.report())
    out.say("")
    failed = next((boot for boot in result.boots if not boot.passed), None)
    why = f" (boot {failed.number}: {failed.matcher.reason})" if failed is not None else ""
    out.say(f"marker contract {'PASSED' if result.passed else 'FAILED'}{why}")
    for path in result.uart_logs:
        out.say(f"uart.log: {path}")
    out.say(f"run directory: {run_dir}  (python -m harness markers {run_dir})")
    if args.junit is not None:
        out.say(f"junit: {args.junit}")
    if recorder is not None and result.boots:
        failing = next((b.number for b in result.boots if not b.passed), None)
        number = failing if failing is not None else result.boots[0].number
        what = f"replay the failing boot {number}" if failing is not None else "replay a boot"
        out.say(f"{what}: {replay_command(run_dir, number)}")
    return EXIT_PASSED if result.passed else EXIT_FAILED


def _describe_lane(lane: Lane) -> str:
    settings = lane.settings
    parts = [
        f"smp {settings.smp}" if settings.smp else "",
        f"{settings.memory_mib} MiB" if settings.memory_mib else "",
    ]
    parts.append(f"-icount {settings.icount}" if settings.icount else "")
    parts.append("recorded (record/replay)" if settings.record else "")
    parts.append(f"timeouts x{lane.multiplier:g}")
    return f"profile: {lane.contract.profile_name} (" + ", ".join(p for p in parts if p) + ")"


def _echo(text: str) -> None:
    """``--console``: the guest's output as it arrives."""
    sys.stdout.write(text)
    sys.stdout.flush()
