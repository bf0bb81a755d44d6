"""The guest image: an aarch64 or riscv64 `virt` kernel plus a CPython initramfs, built from
pinned Debian packages.

Public interface (other parts of the harness code against exactly this)::

    GuestImage    paths of a built image (how QEMU boots it: harness.vm.arch)
    ensure_image  build if missing or stale, return the GuestImage
    load_image    a built image directory as it is (no rebuild), checked against its manifest
    main          the CLI of `python -m harness image`
    ImageError    root of every error the builder raises on purpose

How it works: docs/testing/image.md. Module map: ``recipe`` (images/<arch>.toml),
``apt_sources`` (find the Debian archive in the host's apt sources), ``fetch`` (private apt),
``lock`` (pins), ``extract`` (dpkg-deb), ``kmod`` / ``elf`` (modules, shared libraries),
``stdlib`` (the kept module set), ``cpio`` (newc writer), ``layout`` (what goes where),
``build`` (keys, caching, the steps), ``manifest``, ``cli``.
"""

from __future__ import annotations

from harness.image.build import GuestImage, ensure_image, load_image
from harness.image.errors import ImageError

__all__ = ["GuestImage", "ImageError", "ensure_image", "load_image", "main"]


def main(argv: list[str] | None = None) -> int:
    """The CLI (``python -m harness image ...``); returns the exit code."""
    from harness.image.cli import main as cli_main

    return cli_main(argv)
