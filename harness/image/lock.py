"""The pin file ``images/<arch>.lock``: the exact Debian packages an image is built from.

Checked in, so two builds of one commit use the same bytes (and so CI builds what a developer
tested). The build uses the pinned version whenever the archive still serves it; when it does
not, the build stops and says how to move the pins forward (``--refresh-pins``), rather than
silently building something else. The format is TOML, written by :func:`dump` (no TOML writer
in the stdlib, and this one is tiny).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.image.errors import ContentError, RecipeError
from harness.image.progress import Progress
from harness.image.recipe import Recipe

LOCK_FORMAT = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Pin:
    """One pinned .deb, as apt's index describes it."""

    name: str
    version: str
    architecture: str
    filename: str  # path in the archive pool
    size: int
    sha256: str

    @property
    def deb_name(self) -> str:
        """The file name ``apt-get download`` gives it (``:`` escaped as ``%3a``)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


@dataclass(frozen=True)
class Lock:
    arch: str
    architecture: str
    requested: tuple[str, ...]  # the recipe's package list (+ kernel metapackage) when pinned
    kernel: str  # the kernel package the metapackage named
    pins: tuple[Pin, ...]

    def pin(self, name: str) -> Pin:
        for pin in self.pins:
            if pin.name == name:
                return pin
        raise KeyError(name)


def refresh_command(arch: str) -> str:
    return f"python -m harness image --arch {arch} --refresh-pins"


def load(path: Path) -> Lock | None:
    """The lock at ``path``, or None when there is none yet."""
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != LOCK_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {LOCK_FORMAT}")
        pins = tuple(
            Pin(
                name=str(item["name"]),
                version=str(item["version"]),
                architecture=str(item["architecture"]),
                filename=str(item["filename"]),
                size=int(item["size"]),
                sha256=str(item["sha256"]),
            )
            for item in data["package"]
        )
        for pin in pins:
            if not _SHA256.match(pin.sha256):
                raise ValueError(f"{pin.name}: sha256 {pin.sha256!r} is not 64 hex digits")
        return Lock(
            arch=str(data["arch"]),
            architecture=str(data["architecture"]),
            requested=tuple(str(name) for name in data["requested"]),
            kernel=str(data["kernel"]),
            pins=pins,
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise RecipeError(
            f"{path} is unusable ({exc}); regenerate it with: {refresh_command(path.stem)}"
        ) from exc


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump(lock: Lock) -> str:
    lines = [
        f"# Pinned Debian packages of images/{lock.arch}.toml, written by",
        f"# `{refresh_command(lock.arch)}`. Do not edit by hand.",
        f"format = {LOCK_FORMAT}",
        f"arch = {_quote(lock.arch)}",
        f"architecture = {_quote(lock.architecture)}",
        f"kernel = {_quote(lock.kernel)}",
        "requested = [" + ", ".join(_quote(name) for name in lock.requested) + "]",
    ]
    for pin in sorted(lock.pins, key=lambda p: p.name):
        lines += [
            "",
            "[[package]]",
            f"name = {_quote(pin.name)}",
            f"version = {_quote(pin.version)}",
            f"architecture = {_quote(pin.architecture)}",
            f"filename = {_quote(pin.filename)}",
            f"size = {pin.size}",
            f"sha256 = {_quote(pin.sha256)}",
        ]
    return "\n".join(lines) + "\n"


def save(lock: Lock, path: Path) -> None:
    tmp = path.with_suffix(".lock.tmp")
    tmp.write_text(dump(lock), encoding="utf-8")
    tmp.replace(path)


def check_matches(lock: Lock, requested: tuple[str, ...], path: Path) -> None:
    """The lock must pin what the recipe asks for now; otherwise say how to refresh it."""
    if tuple(sorted(lock.requested)) != tuple(sorted(requested)):
        added = sorted(set(requested) - set(lock.requested))
        removed = sorted(set(lock.requested) - set(requested))
        raise RecipeError(
            f"{path} pins a different package list than the recipe (added: "
            f"{', '.join(added) or 'none'}; removed: {', '.join(removed) or 'none'}); "
            f"update the pins with: {refresh_command(lock.arch)}"
        )


class IndexEntry(Protocol):
    """A package as the archive's index describes it (:class:`harness.image.fetch.IndexRecord`)."""

    @property
    def depends(self) -> str: ...

    def pin(self) -> Pin: ...


class Resolver(Protocol):
    """What pinning needs of the private apt (:class:`harness.image.fetch.AptWorkspace`)."""

    def update(self) -> None: ...

    def resolve(self, names: Sequence[str]) -> Mapping[str, IndexEntry]: ...


def requested(recipe: Recipe) -> tuple[str, ...]:
    """What a lock is made for: the kernel metapackage and the recipe's packages."""
    return (recipe.apt.kernel_metapackage, *recipe.apt.packages)


def first_dependency(depends: str) -> str:
    """The package name of the first alternative of the first ``Depends`` item."""
    first = depends.split(",")[0].split("|")[0].strip()
    return first.split(" ")[0].split(":")[0]


def pin(recipe: Recipe, resolver: Resolver, progress: Progress) -> Lock:
    """Resolve the recipe's packages to the archive's current versions, write the lock file
    and say which versions moved (the caller holds the cache lock)."""
    with progress.step("apt-get update (private)"):
        resolver.update()
    with progress.step("resolve package versions"):
        meta = resolver.resolve([recipe.apt.kernel_metapackage])
        kernel = first_dependency(meta[recipe.apt.kernel_metapackage].depends)
        if not kernel:
            raise ContentError(f"{recipe.apt.kernel_metapackage} depends on no kernel package")
        records = resolver.resolve([kernel, *recipe.apt.packages])
    old = load(recipe.lock_path) if recipe.lock_path.is_file() else None
    new = Lock(
        arch=recipe.arch,
        architecture=recipe.apt.architecture,
        requested=requested(recipe),
        kernel=kernel,
        pins=tuple(record.pin() for record in records.values()),
    )
    save(new, recipe.lock_path)
    before = {pin.name: pin.version for pin in old.pins} if old else {}
    changed = [
        f"{pin.name} {before.get(pin.name, '(new)')} -> {pin.version}"
        for pin in new.pins
        if before.get(pin.name) != pin.version
    ]
    progress.note(
        f"pinned {len(new.pins)} packages in {recipe.lock_path.name}"
        + (f"; changed: {'; '.join(changed)}" if changed else "; no version changed")
        + " (commit the lock file)"
    )
    return new
