"""``python -m harness powercut``: a power-cut campaign. The campaign's own flags and its run
are :mod:`harness.powercut.cli`; this module adds the shared VM options and the set-up."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.common import add_vm_options, ensure_guest_image, new_run_dir, resolve_multiplier
from harness.contract.progress import ProgressPrinter
from harness.errors import ConfigError
from harness.vm.record import POWERCUT_REFUSAL


def add_parser(commands: Any) -> None:
    from harness.powercut.cli import add_arguments

    powercut = commands.add_parser(
        "powercut",
        help="cut the VM's power while it writes; check what survived",
        description="Serve the disk through nbdkit with a write-back cache the harness "
        "controls, cut the power at random moments while the guest writes, decide the fate "
        "of unflushed writes, boot again and check that no acknowledged write was lost "
        "(docs/testing/powercut.md). Exit 0 only if every cycle passed.",
    )
    add_vm_options(powercut, disk=False, contract=False)
    add_arguments(powercut)
    powercut.add_argument(
        "--record",
        action="store_true",
        help="refused: record/replay needs every disk inside QEMU (see `run --record`)",
    )
    powercut.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    from harness.powercut.cli import options_from, run, run_merge
    from harness.shard import wants_merge

    if args.record:
        raise ConfigError(POWERCUT_REFUSAL)
    doc = (args.update_doc, args.doc_block) if args.update_doc else None
    if wants_merge(args):
        return run_merge(args.merge_reports[1:], doc)
    options = options_from(args, multiplier=resolve_multiplier(args))
    run_dir = new_run_dir(args, prefix="powercut-")
    image = (
        ensure_guest_image(args.arch, ProgressPrinter(), args.image_dir)
        if args.image_dir is not None
        else ensure_guest_image(args.arch, ProgressPrinter())
    )
    return run(options, run_dir=run_dir, image=image, report=args.report, doc=doc)
