"""``python -m harness``: a thin command line over the library, one module per subcommand.

Commands:

``run``      the marker contract, every boot on one fresh disk (what ``scripts/qemu-test.sh``
             and CI run). Exit 0 only when every marker of every boot arrived.
``boot``     one VM with the console on your terminal (``--mode shell`` gives a busybox shell,
             ``--mode contract --boot 2`` replays one contract boot); Ctrl-] powers it off.
``image``    build or inspect the guest image (delegates to :mod:`harness.image`).
``markers``  replay a past run's console through the contract: which marker came when,
             what was missing, which line failed.
``diff``     compare two runs: missing and extra markers, order, timing drift, the first
             diverging console line.
``replay``   replay one boot of a run recorded with ``run --record``, instruction for
             instruction, and compare its console with the recorded one byte for byte
             (``--gdb``: paused, with QEMU's gdb stub).
``powercut`` a power-cut campaign: cut the VM's power while it writes, boot again on the same
             disk, check that every acknowledged write survived (:mod:`harness.powercut`).

Each subcommand module (:mod:`.run`, :mod:`.boot`, :mod:`.image`, :mod:`.markers`,
:mod:`.diff`, :mod:`.powercut`, :mod:`.replay`) declares its parser and runs it;
:mod:`.common` holds the VM options (declared once) and the set-up the VM-booting commands
share; :mod:`.lanes` the profile, phase and JUnit options of ``run``.

Exit codes: 0 passed, 1 the contract failed, 2 a harness problem (configuration, QEMU or the
image missing, QEMU failing to start), 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from harness.cli import boot, crashstates, diff, image, markers, powercut, replay, run
from harness.cli.common import EXIT_FAILED, EXIT_HARNESS, EXIT_INTERRUPTED, EXIT_PASSED
from harness.errors import HarnessError, Terminated

__all__ = ["EXIT_FAILED", "EXIT_HARNESS", "EXIT_INTERRUPTED", "EXIT_PASSED", "build_parser", "main"]


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
    for module in (run, boot, image, markers, diff, powercut, crashstates, replay):
        module.add_parser(commands)
    return parser


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
        return int(args.handler(args))
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
