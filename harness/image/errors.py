"""Errors of the image builder: one root, and messages a user can act on.

Every failure the builder expects ends up as an :class:`ImageError` whose message says what went
wrong *and what to do about it*; the CLI prints that message and exits 1 without a traceback.
Causes are chained with ``raise ... from`` so ``--verbose`` runs still show them.

Tree (under :class:`harness.errors.HarnessError`)::

    ImageError
     +-- RecipeError          images/<arch>.toml or the lock file is malformed
     +-- SourcesError         no usable Debian archive entry in the host's apt sources
     +-- ToolMissing          a host program (dpkg-deb, apt-get) is not installed
     +-- DiskFull             ENOSPC while writing the cache or the build directory
     +-- FetchError           apt could not fetch (evidence: argv, exit code, stderr tail)
     |    +-- NetworkError    the archive is unreachable
     |    +-- PackageNotFound a package is not in the archive
     |    +-- NotServed       the archive does not serve a recipe's suite or architecture
     |    +-- PinUnavailable  the pinned version is gone from the archive
     |    +-- ChecksumError   a .deb does not match its pinned/indexed sha256
     +-- ContentError        the packages lack something the image needs (a shared library,
                              a kernel module, a stdlib module)
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError


class ImageError(HarnessError):
    """Root of every error the image builder raises on purpose.

    A :class:`~harness.errors.HarnessError`, so whatever runs the harness (``python -m
    harness run``, ``make qemu-test``) reports a failed image build as a harness problem
    with this message, not a traceback.
    """


class RecipeError(ImageError):
    """The recipe or the lock file cannot be used as written."""


class SourcesError(ImageError):
    """The host's apt sources name no Debian archive we can fetch the recipe's suites from."""


class ToolMissing(ImageError):
    """A host program the builder runs is not installed."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(
            f"{tool} not found on PATH: the image builder needs it "
            f"(install it with: apt-get install {package})"
        )
        self.tool = tool
        self.package = package


class DiskFull(ImageError):
    """No space left while writing ``path``."""

    def __init__(self, path: Path, cause: OSError | None = None) -> None:
        free = _free_bytes(path)
        where = f" ({free / 2**20:.0f} MiB free there)" if free is not None else ""
        super().__init__(
            f"no space left on the device holding {path}{where}: free some space, or point "
            f"the cache elsewhere with STATEFS_QEMU_CACHE=/some/dir"
        )
        self.path = path
        self.exc = cause


class FetchError(ImageError):
    """apt failed; carries the command line, exit code and the tail of its output."""

    def __init__(
        self, message: str, *, argv: Sequence[str] = (), returncode: int | None = None, output=""
    ) -> None:
        detail = ""
        if argv:
            detail += f"\n  command: {' '.join(argv)} (exit {returncode})"
        tail = _tail(output)
        if tail:
            detail += "\n  apt said:\n" + "\n".join(f"    {line}" for line in tail)
        super().__init__(message + detail)
        self.argv = tuple(argv)
        self.returncode = returncode
        self.output = output


class NetworkError(FetchError):
    """The Debian archive could not be reached."""


class PackageNotFound(FetchError):
    """The archive has no package by that name for the target architecture."""


class NotServed(FetchError):
    """The archive behind the host's URIs has no such suite, or not for this architecture."""


class PinUnavailable(FetchError):
    """The lock file pins a version the archive no longer serves."""


class ChecksumError(FetchError):
    """A downloaded .deb does not match the sha256 it was pinned or indexed with."""


class ContentError(ImageError):
    """The fetched packages lack something the image needs."""


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _free_bytes(path: Path) -> int | None:
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def _tail(output: str, lines: int = 12) -> list[str]:
    kept = [line for line in output.splitlines() if line.strip()]
    return kept[-lines:]
