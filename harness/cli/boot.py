"""``python -m harness boot``: one VM with its console on this terminal (``--mode shell``: a
busybox shell; ``--mode contract --boot 2``: one contract boot with live markers; ``--mode
script``: run a Python file in the guest). Ctrl-] powers it off."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.artifacts import RUN_SUMMARY
from harness.cli.common import (
    EXIT_FAILED,
    EXIT_PASSED,
    add_vm_options,
    duration_arg,
    resolve_multiplier,
    start_vm_session,
)
from harness.contract.matcher import BootMatcher, Outcome
from harness.contract.progress import ProgressPrinter
from harness.contract.spec import BootContract, Contract
from harness.deadline import Deadline
from harness.diagnosis import FORMAT_FORCE_ARG
from harness.errors import ConfigError
from harness.vm.disklock import hold_disks
from harness.vm.disks import SNAPSHOT_MAX_BYTES
from harness.vm.kernel_args import new_nonce, render, script_args, shell_args


def add_parser(commands: Any) -> None:
    boot = commands.add_parser(
        "boot",
        help="one VM with its console on this terminal",
        description="Boot one VM and attach its serial console to "
        "this terminal. Ctrl-] detaches and powers the VM off; "
        "uart.log is kept in the run directory.",
    )
    add_vm_options(boot)
    boot.add_argument(
        "--mode",
        choices=("shell", "contract", "script"),
        default="shell",
        help="shell: busybox shell (default); contract: one contract boot "
        "with live markers; script: run --script in the guest",
    )
    boot.add_argument("--boot", type=int, default=1, help="contract boot number (default 1)")
    boot.add_argument("--nonce", default=None, help="sq.nonce (use boot 1's for --boot 2)")
    boot.add_argument(
        "--from-run",
        type=Path,
        default=None,
        metavar="RUN",
        help="replay --boot N of a past contract run: its nonce, and a copy of its disk as it "
        "was before that boot (implies --mode contract)",
    )
    boot.add_argument("--script", type=Path, help="python file to run with --mode script")
    boot.add_argument(
        "--append",
        action="append",
        default=[],
        metavar="ARG",
        help="extra kernel argument (repeatable)",
    )
    boot.add_argument(
        "--qmp-socket",
        type=Path,
        default=None,
        help="also serve QMP here for qmp-shell / socat (debugging)",
    )
    boot.add_argument(
        "--timeout",
        type=duration_arg,
        default=None,
        help="power the VM off after this long (default: never)",
    )
    boot.add_argument(
        "--no-input",
        action="store_true",
        help="only show the console, do not forward keys (no terminal needed)",
    )
    boot.set_defaults(handler=command)


#: What PID 1 prints once the mode's work returned (guest/init/pid1.py): a script that raised,
#: or called sys.exit(), never gets there.
SCRIPT_DONE = "init: done, powering off"


def _kernel_args(
    args: argparse.Namespace, contract: Contract, multiplier: float
) -> tuple[tuple[str, ...], BootMatcher | None]:
    """The mode's kernel arguments, and the matcher that judges the boot (none for a shell)."""
    if args.mode == "shell":
        return shell_args(), None
    if args.mode == "script":
        if args.script is None:
            raise ConfigError("--mode script needs --script FILE")
        source = args.script.read_text(encoding="utf-8")
        # The script passed if PID 1 finished the mode, with no failure line on the way.
        done = BootContract.of([SCRIPT_DONE], failures=contract.failures, timeout=1e9)
        return script_args(source, arch=args.arch), BootMatcher(done, multiplier=multiplier)
    nonce = args.nonce or new_nonce()
    spec = contract.for_boot(args.boot)
    kernel_args = render(spec.kernel_args, {"nonce": nonce, "boot": args.boot})
    return kernel_args, BootMatcher(spec, multiplier=multiplier)


def command(args: argparse.Namespace) -> int:
    from harness.vm.interactive import ESCAPE_NAME, attach
    from harness.vm.machine import Machine

    out = ProgressPrinter(stream=sys.stderr)
    contract = Contract.load(args.contract)
    disk_from = _from_run(args) if args.from_run is not None else None
    kernel_args, matcher = _kernel_args(args, contract, resolve_multiplier(args))
    if args.format_disk:
        kernel_args = (*kernel_args, FORMAT_FORCE_ARG)
    session = start_vm_session(args, out, disk_from=disk_from, debug_qmp_socket=args.qmp_socket)
    config = session.config.with_kernel_args(*kernel_args, *args.append)
    name = f"boot{args.boot}" if args.mode == "contract" else args.mode
    machine = Machine(config, name=name, artifacts_root=session.run_dir)
    out.say(f"console: {ESCAPE_NAME} powers the VM off; artifacts: {machine.artifacts.path}")
    if args.qmp_socket:
        out.say(f"QMP: .venv/bin/python -m qemu.qmp.qmp_shell {args.qmp_socket}")
    deadline = Deadline(args.timeout, label="--timeout")
    with hold_disks(config.disks, name=name), machine:
        on_text = None
        if matcher is not None:
            feed_matcher = matcher

            def on_text(text: str, at: float) -> None:
                feed_matcher.feed(text, at)

        why = attach(machine, deadline=deadline, on_text=on_text, forward_input=not args.no_input)
    ended = machine.exit_info.describe() if machine.exit_info else ""
    out.say(f"\r\nconsole closed ({why}); {ended}")
    out.say(f"uart.log: {machine.artifacts.uart_log}")
    if matcher is None:
        return EXIT_PASSED
    if args.mode == "script":
        matcher.finish(f"the console ended without {SCRIPT_DONE!r}: the script raised or exited")
        if matcher.outcome is Outcome.PASSED:
            out.say("script: PASSED (PID 1 finished it)")
            return EXIT_PASSED
        out.say(f"script: FAILED: {matcher.reason}")
        if matcher.failure is not None:
            out.say(f"  failure line {matcher.failure.line_no}: {matcher.failure.line}")
        return EXIT_FAILED
    matcher.finish("the console ended")
    out.say(matcher.report())
    return EXIT_PASSED if matcher.outcome is Outcome.PASSED else EXIT_FAILED


def _from_run(args: argparse.Namespace) -> Path | None:
    """``--from-run RUN``: take the run's nonce and its disk as it was before ``--boot``
    (boot 1 started from a blank disk: it gets a fresh one)."""
    run = args.from_run
    try:
        summary = json.loads((run / RUN_SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--from-run {run}: cannot read its {RUN_SUMMARY}: {exc}") from None
    if args.disk is not None:
        raise ConfigError("--from-run takes the run's own disk: leave out --disk")
    args.mode = "contract"
    args.nonce = args.nonce or summary.get("nonce")
    if args.boot == 1:
        return None
    copies = sorted(run.glob(f"*.before-boot{args.boot}.*"))
    if not copies:
        raise ConfigError(
            f"--from-run {run}: the run kept no copy of its disk before boot {args.boot} "
            f"(it did not get that far, or its disk held more than "
            f"{SNAPSHOT_MAX_BYTES >> 20} MiB of data)"
        )
    return copies[0]
