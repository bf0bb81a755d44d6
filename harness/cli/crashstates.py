"""``python -m harness crash-states``: every crash state of a real guest run. The command's own
flags, its run and ``crash-states merge`` are :mod:`harness.crashlog.cli`; this module adds the
shared VM options and the set-up."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.common import add_vm_options, ensure_guest_image, new_run_dir, resolve_multiplier
from harness.contract.progress import ProgressPrinter


def add_parser(commands: Any) -> None:
    from harness.crashlog.cli import add_arguments

    parser = commands.add_parser(
        "crash-states",
        help="judge every crash state of a real guest run (QEMU blklogwrites)",
        description="Record a guest run's block writes with QEMU's blklogwrites, rebuild "
        "every crash state with the host crash simulator, judge each with the host's statefs "
        "and boot a seeded sample in the VM (docs/testing/powercut.md). "
        "`crash-states merge R...` combines shard reports. Exit 0 only if none failed.",
    )
    add_vm_options(parser, disk=False, contract=False)
    add_arguments(parser)
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    from harness.crashlog import cli as crashlog
    from harness.shard import wants_merge

    if wants_merge(args):
        return crashlog.run_merge(args.merge_reports[1:], doc=args.update_doc, block=args.doc_block)
    options = crashlog.options_from(args, multiplier=resolve_multiplier(args))
    run_dir = new_run_dir(args, prefix="crash-")
    image = None if options.from_log else ensure_guest_image(args.arch, ProgressPrinter())
    return crashlog.run(
        options,
        run_dir=run_dir,
        image=image,
        report_path=args.report,
        doc=args.update_doc,
        block=args.doc_block,
    )
