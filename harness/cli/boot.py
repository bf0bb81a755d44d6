"""``python -m harness boot``: one VM with its console on this terminal (``--mode shell``: a
busybox shell; ``--mode contract --boot 2``: one contract boot with live markers; ``--mode
script``: run a Python file in the guest). Ctrl-] powers it off."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

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
from harness.contract.spec import Contract
from harness.deadline import Deadline
from harness.errors import ConfigError
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


def _kernel_args(
    args: argparse.Namespace, contract: Contract, multiplier: float
) -> tuple[tuple[str, ...], BootMatcher | None]:
    """The mode's kernel arguments, and the matcher when the mode is a contract boot."""
    if args.mode == "shell":
        return shell_args(), None
    if args.mode == "script":
        if args.script is None:
            raise ConfigError("--mode script needs --script FILE")
        return script_args(args.script.read_text(encoding="utf-8"), arch=args.arch), None
    nonce = args.nonce or new_nonce()
    spec = contract.for_boot(args.boot)
    kernel_args = render(spec.kernel_args, {"nonce": nonce, "boot": args.boot})
    return kernel_args, BootMatcher(spec, multiplier=multiplier)


def command(args: argparse.Namespace) -> int:
    from harness.vm.interactive import ESCAPE_NAME, attach
    from harness.vm.machine import Machine

    out = ProgressPrinter(stream=sys.stderr)
    contract = Contract.load(args.contract)
    kernel_args, matcher = _kernel_args(args, contract, resolve_multiplier(args))
    session = start_vm_session(args, out, debug_qmp_socket=args.qmp_socket)
    config = session.config.with_kernel_args(*kernel_args, *args.append)
    machine = Machine(
        config, name=f"boot{args.boot}" if matcher else args.mode, artifacts_root=session.run_dir
    )
    out.say(f"console: {ESCAPE_NAME} powers the VM off; artifacts: {machine.artifacts.path}")
    if args.qmp_socket:
        out.say(f"QMP: .venv/bin/python -m qemu.qmp.qmp_shell {args.qmp_socket}")
    deadline = Deadline(args.timeout, label="--timeout")
    with machine:
        on_text = None
        if matcher is not None:
            feed_matcher = matcher

            def on_text(text: str, at: float) -> None:
                feed_matcher.feed(text, at)

        why = attach(machine, deadline=deadline, on_text=on_text, forward_input=not args.no_input)
    ended = machine.exit_info.describe() if machine.exit_info else ""
    out.say(f"\r\nconsole closed ({why}); {ended}")
    out.say(f"uart.log: {machine.artifacts.uart_log}")
    if matcher is not None:
        matcher.finish("the console ended")
        out.say(matcher.report())
        return EXIT_PASSED if matcher.outcome is Outcome.PASSED else EXIT_FAILED
    return EXIT_PASSED
