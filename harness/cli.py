"""``python -m harness``: a thin command line over the library.

Commands:

``run``      the marker contract, every boot on one fresh disk (what ``scripts/qemu-test.sh``
             and CI run). Exit 0 only when every marker of every boot arrived.
``boot``     one VM with the console on your terminal (``--mode shell`` gives a busybox shell,
             ``--mode contract --boot 2`` replays one contract boot); Ctrl-] powers it off.
``image``    build or inspect the guest image (delegates to :mod:`harness.image`).
``markers``  replay a past run's console through the contract: which marker came when,
             what was missing, which line failed.
``powercut`` a power-cut campaign: cut the VM's power while it writes, boot again on the same
             disk, check that every acknowledged write survived (:mod:`harness.powercut`).

Exit codes: 0 passed, 1 the contract failed, 2 a harness problem (configuration, QEMU or the
image missing, QEMU failing to start), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from harness.artifacts import create_unique_dir, default_runs_dir, latest_run, new_run_id
from harness.config import ACCELS, CACHE_MODES, DiskSpec, MachineConfig
from harness.contract import DEFAULT_CONTRACT, Contract
from harness.deadline import Deadline, parse_duration
from harness.errors import ConfigError, DependencyMissing, HarnessError, Terminated
from harness.kernel_args import new_nonce, render, script_args, shell_args
from harness.matcher import BootMatcher, Outcome
from harness.powercut.cli import add_arguments as add_powercut_arguments
from harness.progress import ProgressPrinter
from harness.runner import DEFAULT_DISK_MIB, ContractRunner, RunOptions, create_disk

log = logging.getLogger(__name__)

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_HARNESS = 2
EXIT_INTERRUPTED = 130

MULTIPLIER_ENV = "QEMU_TIMEOUT_MULTIPLIER"


# -- shared option helpers ------------------------------------------------------------------
def _multiplier(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"must be in (0, 1000], got {value}")
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_vm_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("virtual machine")
    group.add_argument("--arch", default="aarch64", help="guest architecture (default aarch64)")
    group.add_argument(
        "--accel",
        choices=ACCELS,
        default="auto",
        help="auto: KVM when usable for the guest arch, else TCG (default)",
    )
    group.add_argument(
        "--disk", type=Path, help="use this raw disk image instead of a fresh one (kept as is)"
    )
    group.add_argument(
        "--disk-size-mib",
        type=int,
        default=DEFAULT_DISK_MIB,
        help=f"size of a fresh disk (default {DEFAULT_DISK_MIB})",
    )
    group.add_argument(
        "--cache",
        choices=CACHE_MODES,
        default="writeback",
        help="QEMU -drive cache mode (default writeback)",
    )
    group.add_argument(
        "--runs-dir", type=Path, default=None, help="where run directories go (default build/runs)"
    )
    group.add_argument(
        "--timeout-multiplier",
        type=_multiplier,
        default=None,
        help=f"scale every contract timeout (default ${MULTIPLIER_ENV} or 1)",
    )
    group.add_argument(
        "--contract",
        type=Path,
        default=DEFAULT_CONTRACT,
        help="marker contract file (default harness/contract.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Boot the statefs-qemu guest in QEMU and check its marker contract.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log harness internals to stderr (-vv: QMP traffic too)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the marker contract (every boot)",
        description="Boot the guest once per contract boot on one fresh "
        "disk and check every marker. Exit 0 only on a full contract.",
    )
    _add_vm_options(run)
    run.add_argument(
        "--until-marker",
        action="store_true",
        help="stop the last boot as soon as every marker arrived "
        "(RUN_UNTIL_MARKER=1); otherwise wait for the guest's power-off",
    )
    run.add_argument(
        "--timeout",
        type=_duration,
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
        "--dry-run",
        action="store_true",
        help="print what would run (settings, kernel arguments) and exit",
    )

    boot = commands.add_parser(
        "boot",
        help="one VM with its console on this terminal",
        description="Boot one VM and attach its serial console to "
        "this terminal. Ctrl-] detaches and powers the VM off; "
        "uart.log is kept in the run directory.",
    )
    _add_vm_options(boot)
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
        type=_duration,
        default=None,
        help="power the VM off after this long (default: never)",
    )
    boot.add_argument(
        "--no-input",
        action="store_true",
        help="only show the console, do not forward keys (no terminal needed)",
    )

    image = commands.add_parser("image", help="build or inspect the guest image", add_help=False)
    image.add_argument(
        "image_args",
        nargs=argparse.REMAINDER,
        help="arguments for the image tool (try: image --help)",
    )

    markers = commands.add_parser(
        "markers",
        help="which marker came when in a past run",
        description="Replay a run's uart.timestamps through the "
        "contract: arrival times, missing markers, failure line.",
    )
    markers.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=None,
        help="run directory, boot directory or uart.log (default: latest run)",
    )
    markers.add_argument(
        "--boot",
        type=int,
        default=None,
        help="only this boot (or: the boot number of a lone uart.log)",
    )
    markers.add_argument(
        "--contract",
        type=Path,
        default=DEFAULT_CONTRACT,
        help="marker contract file (default harness/contract.toml)",
    )

    powercut = commands.add_parser(
        "powercut",
        help="cut the VM's power while it writes; check what survived",
        description="Serve the disk through nbdkit with a write-back cache the harness "
        "controls, cut the power at random moments while the guest writes, decide the fate "
        "of unflushed writes, boot again and check that no acknowledged write was lost "
        "(docs/testing/powercut.md). Exit 0 only if every cycle passed.",
    )
    vm = powercut.add_argument_group("virtual machine")
    vm.add_argument("--arch", default="aarch64", help="guest architecture (default aarch64)")
    vm.add_argument("--accel", choices=ACCELS, default="auto", help="auto, kvm or tcg")
    vm.add_argument(
        "--runs-dir", type=Path, default=None, help="where run directories go (default build/runs)"
    )
    vm.add_argument(
        "--timeout-multiplier",
        type=_multiplier,
        default=None,
        help=f"scale every timeout (default ${MULTIPLIER_ENV} or 1)",
    )
    add_powercut_arguments(powercut)
    return parser


# -- helpers --------------------------------------------------------------------------------
def _resolve_multiplier(args: argparse.Namespace) -> float:
    if args.timeout_multiplier is not None:
        return args.timeout_multiplier
    env = os.environ.get(MULTIPLIER_ENV)
    if env:
        try:
            return _multiplier(env)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"${MULTIPLIER_ENV}: {exc}") from None
    return 1.0


def _ensure_image(arch: str, out: ProgressPrinter) -> Any:
    try:
        from harness.image import ensure_image
    except ImportError as exc:
        raise DependencyMissing(f"the guest image builder is not available: {exc}") from exc
    started = time.monotonic()
    image = ensure_image(arch, progress=True)
    out.say(f"image: {image.kernel.parent} ({time.monotonic() - started:.1f} s)")
    return image


def _prepare_disk(args: argparse.Namespace, run_dir: Path) -> Path:
    if args.disk is not None:
        if not args.disk.is_file():
            raise ConfigError(f"--disk {args.disk} does not exist")
        return args.disk
    return create_disk(run_dir / "disk.img", args.disk_size_mib)


def _base_config(image: Any, disk: Path, args: argparse.Namespace, **extra: Any) -> MachineConfig:
    return MachineConfig.from_image(
        image, disks=(DiskSpec(str(disk), cache=args.cache),), accel=args.accel, **extra
    )


def _setup_logging(verbosity: int, run_dir: Path | None = None) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if verbosity == 0 else logging.DEBUG)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if verbosity < 2:
        console.addFilter(
            lambda record: (
                not record.name.startswith("qemu.qmp") or record.levelno >= logging.WARNING
            )
        )
    root.addHandler(console)
    if run_dir is not None:
        file_handler = logging.FileHandler(run_dir / "harness.log", encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(file_handler)


# -- commands -------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    out = ProgressPrinter(prefix="")
    contract = Contract.load(args.contract)
    multiplier = _resolve_multiplier(args)
    nonce = args.nonce or new_nonce()
    boots = args.boots or list(contract.boot_numbers)
    for number in boots:
        contract.boot(number)  # validates the numbers before anything starts
    if args.dry_run:
        out.say(f"contract: {contract.source}")
        out.say(f"until marker: {'yes' if args.until_marker else 'no (wait for power-off)'}")
        out.say(f"run timeout: {'none' if args.timeout is None else f'{args.timeout:g} s'}")
        out.say(f"timeout multiplier: {multiplier:g}")
        for number in boots:
            spec = contract.for_boot(number)
            args_line = " ".join(render(spec.kernel_args, {"nonce": nonce, "boot": number}))
            out.say(
                f"boot {number}: timeout {spec.timeout * multiplier:g} s, "
                f"{len(spec.required)} required markers, kernel args: {args_line}"
            )
        return EXIT_PASSED

    runs_dir = args.runs_dir or default_runs_dir()
    run_dir = create_unique_dir(runs_dir, new_run_id())
    _setup_logging(args.verbose, run_dir)
    image = _ensure_image(args.arch, out)
    disk = _prepare_disk(args, run_dir)
    config = _base_config(image, disk, args)
    out.say(f"run: {run_dir}  (nonce {nonce}, disk {disk})")

    def on_boot_start(number: int, machine: Any) -> None:
        out.say(f"boot {number}: starting QEMU ({machine.artifacts.path.name})")

    options = RunOptions(
        until_marker=args.until_marker,
        timeout=args.timeout,
        multiplier=multiplier,
        nonce=nonce,
        boots=boots,
    )
    echo = (lambda text: (sys.stdout.write(text), sys.stdout.flush())) if args.console else None
    runner = ContractRunner(
        config,
        contract,
        run_dir=run_dir,
        options=options,
        progress=out,
        echo=echo,
        on_boot_start=on_boot_start,
    )
    result = runner.run()
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
    out.say(f"marker contract {'PASSED' if result.passed else 'FAILED'}")
    for path in result.uart_logs:
        out.say(f"uart.log: {path}")
    out.say(f"run directory: {run_dir}  (python -m harness markers {run_dir})")
    return EXIT_PASSED if result.passed else EXIT_FAILED


def cmd_boot(args: argparse.Namespace) -> int:
    from harness.interactive import ESCAPE_NAME, attach
    from harness.machine import Machine

    out = ProgressPrinter(stream=sys.stderr)
    multiplier = _resolve_multiplier(args)
    contract = Contract.load(args.contract)
    matcher: BootMatcher | None = None
    if args.mode == "shell":
        kernel_args: tuple[str, ...] = shell_args()
    elif args.mode == "script":
        if args.script is None:
            raise ConfigError("--mode script needs --script FILE")
        kernel_args = script_args(args.script.read_text(encoding="utf-8"), arch=args.arch)
    else:
        nonce = args.nonce or new_nonce()
        spec = contract.for_boot(args.boot)
        kernel_args = render(spec.kernel_args, {"nonce": nonce, "boot": args.boot})
        matcher = BootMatcher(spec, multiplier=multiplier)
    runs_dir = args.runs_dir or default_runs_dir()
    run_dir = create_unique_dir(runs_dir, new_run_id())
    _setup_logging(args.verbose, run_dir)
    image = _ensure_image(args.arch, out)
    disk = _prepare_disk(args, run_dir)
    config = _base_config(image, disk, args, debug_qmp_socket=args.qmp_socket)
    config = config.with_kernel_args(*kernel_args, *args.append)
    machine = Machine(
        config, name=f"boot{args.boot}" if matcher else args.mode, artifacts_root=run_dir
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


def cmd_image(args: argparse.Namespace) -> int:
    try:
        from harness.image import main as image_main
    except ImportError as exc:
        raise DependencyMissing(f"the guest image builder is not available: {exc}") from exc
    image_args = list(args.image_args)
    if image_args[:1] == ["--"]:
        image_args = image_args[1:]
    return image_main(image_args)


def cmd_markers(args: argparse.Namespace) -> int:
    from harness.history import replay

    path = args.path or latest_run()
    if path is None:
        raise ConfigError(f"no runs under {default_runs_dir()}; give a run directory")
    contract = Contract.load(args.contract)
    boots = replay(path, contract, boot=args.boot)
    out = ProgressPrinter()
    out.say(f"run: {path}")
    passed = True
    for boot in boots:
        passed = passed and boot.matcher.outcome is Outcome.PASSED
        note = "" if boot.timed else "  [no uart.timestamps: arrival times unknown]"
        verdict = boot.matcher.outcome.value.upper()
        out.say(
            boot.matcher.report(header=f"boot {boot.number} ({boot.directory}): {verdict}{note}")
        )
    expected = {n for n in contract.boot_numbers} if args.boot is None else {args.boot}
    seen = {b.number for b in boots}
    if expected - seen:
        out.say(f"boots without a console record: {', '.join(map(str, sorted(expected - seen)))}")
        passed = False
    return EXIT_PASSED if passed else EXIT_FAILED


def cmd_powercut(args: argparse.Namespace) -> int:
    from harness.powercut.cli import options_from, run

    options = options_from(args, multiplier=_resolve_multiplier(args))
    run_dir = create_unique_dir(args.runs_dir or default_runs_dir(), f"powercut-{new_run_id()}")
    _setup_logging(args.verbose, run_dir)
    image = _ensure_image(args.arch, ProgressPrinter())
    return run(options, run_dir=run_dir, image=image)


COMMANDS = {
    "run": cmd_run,
    "boot": cmd_boot,
    "image": cmd_image,
    "markers": cmd_markers,
    "powercut": cmd_powercut,
}


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "image" in argv:
        # Everything after `image` belongs to the image tool, --help included (argparse's
        # REMAINDER would still claim a leading option for us).
        index = argv.index("image")
        if all(arg.startswith("-") for arg in argv[:index]):
            argv = [*argv[:index], "image", "--", *argv[index + 1 :]]
    args = build_parser().parse_args(argv)
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, _terminate)  # cleanup runs in `with` blocks
    try:
        return COMMANDS[args.command](args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_HARNESS
    except KeyboardInterrupt:
        print("interrupted: every QEMU process was stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated as exc:
        print(f"{exc}: every QEMU process was stopped", file=sys.stderr)
        return 128 + exc.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
