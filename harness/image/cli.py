"""``python -m harness image``: build (or check) the guest image from the command line.

A thin layer over :class:`~harness.image.build.ImageBuilder`: parse flags, set up logging,
print an :class:`ImageError`'s message (no traceback unless ``--verbose``) and exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import stat
import sys
from pathlib import Path

from harness.image.build import ImageBuilder
from harness.image.cpio import read_entries
from harness.image.errors import ImageError
from harness.image.progress import Progress
from harness.image.recipe import available_arches

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness image",
        description="Build the guest kernel + initramfs from pinned Debian packages into "
        "build/images/<arch>/ (incremental: only what changed is rebuilt).",
    )
    p.add_argument(
        "--arch", default="aarch64", help="recipe images/<ARCH>.toml (default: %(default)s)"
    )
    p.add_argument(
        "--build-dir", type=Path, default=None, help="top build directory (default: <repo>/build)"
    )
    p.add_argument(
        "--force", action="store_true", help="rebuild every segment (the download cache is kept)"
    )
    p.add_argument(
        "--refresh-pins",
        action="store_true",
        help="re-resolve the recipe's packages to the archive's current versions and rewrite "
        "images/<ARCH>.lock before building",
    )
    p.add_argument(
        "--refresh-stale-pins",
        action="store_true",
        default=None,
        help="when the archive no longer serves a pinned version, refresh the pins instead of "
        "failing (also: STATEFS_QEMU_REFRESH_STALE_PINS=1)",
    )
    p.add_argument(
        "--list", action="store_true", help="after building, list the initramfs contents"
    )
    p.add_argument("--json", action="store_true", help="print the image paths as JSON on stdout")
    group = p.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    group.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    return p


def _list(initramfs: Path) -> None:
    for entry in read_entries(initramfs.read_bytes()):
        extra = ""
        if entry.kind == "symlink":
            extra = f" -> {entry.data.decode()}"
        elif entry.kind == "chardev":
            extra = f" (char {entry.rdevmajor},{entry.rdevminor})"
        print(f"{stat.filemode(entry.mode)} {len(entry.data):>9} /{entry.name}{extra}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.arch not in available_arches():
        print(
            f"image: unknown --arch {args.arch!r} (recipes: {', '.join(available_arches())})",
            file=sys.stderr,
        )
        return 2
    builder = ImageBuilder(
        args.arch,
        build_dir=args.build_dir,
        progress=Progress(not args.quiet),
        force=args.force,
        refresh_pins=args.refresh_pins,
        refresh_stale_pins=args.refresh_stale_pins,
    )
    try:
        image = builder.ensure()
    except ImageError as exc:
        if args.verbose:
            log.exception("image build failed")
        print(f"image: error: {exc}", file=sys.stderr)
        return 1
    if args.list:
        _list(image.initramfs)
    if args.json:
        print(
            json.dumps(
                {
                    "arch": image.arch,
                    "kernel": str(image.kernel),
                    "initramfs": str(image.initramfs),
                    "manifest": str(image.manifest),
                }
            )
        )
    elif not args.quiet:
        print(f"image: {image.kernel}\nimage: {image.initramfs}", file=sys.stderr)
    return 0
