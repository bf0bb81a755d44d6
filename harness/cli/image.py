"""``python -m harness image``: build or inspect the guest image (delegates to
:mod:`harness.image`, which owns its flags, ``--help`` included)."""

from __future__ import annotations

import argparse
from typing import Any

from harness.errors import DependencyMissing


def add_parser(commands: Any) -> None:
    image = commands.add_parser("image", help="build or inspect the guest image", add_help=False)
    image.add_argument(
        "image_args",
        nargs=argparse.REMAINDER,
        help="arguments for the image tool (try: image --help)",
    )
    image.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    try:
        from harness.image import main as image_main
    except ImportError as exc:
        raise DependencyMissing(f"the guest image builder is not available: {exc}") from exc
    image_args = list(args.image_args)
    if image_args[:1] == ["--"]:
        image_args = image_args[1:]
    return image_main(image_args)
