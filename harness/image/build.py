"""Build the guest image, or return the one already built when nothing it depends on changed.

Every input is reduced to a key, and each product is rebuilt only when its key changed:

==============  ======================================================  =======================
product         key covers                                              typical cost
==============  ======================================================  =======================
package tree    the pins, the kernel module list                        fetch + unpack, ~6 s
base segment    builder code, recipe, lock file, which compiler         ~0.5 s
stdlib segment  base key + the computed kept-module set                 ~0.5 s (7 s riscv64)
guest segment   always rebuilt when anything changed                    ~0.1 s
==============  ======================================================  =======================

So a change under ``guest/`` repacks the initramfs from cached segments in about 0.1 s (0.7 s
when it changes which stdlib modules are imported, which adds the stdlib segment).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.image import bytecode, cache, keys, layout, lock, manifest, stdlib
from harness.image.apt_sources import read_host_sources, select_archive_sources
from harness.image.cpio import trailer
from harness.image.errors import (
    DiskFull,
    ImageError,
    PinUnavailable,
    is_disk_full,
)
from harness.image.fetch import AptWorkspace, sha256_file
from harness.image.manifest import INITRAMFS_NAME, KERNEL_NAME
from harness.image.progress import Progress
from harness.image.recipe import REPO_ROOT, Recipe, load_recipe
from harness.image.trees import PackageTree, package_tree

log = logging.getLogger(__name__)

GUEST_DIR = REPO_ROOT / "guest"
DEFAULT_BUILD_DIR = REPO_ROOT / "build"
REFRESH_STALE_ENV = "STATEFS_QEMU_REFRESH_STALE_PINS"
_BUILDER_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class GuestImage:
    """A built image: the files QEMU boots (how it boots them: :mod:`harness.vm.arch`)."""

    arch: str
    kernel: Path
    initramfs: Path
    manifest: Path


def kept_stdlib(
    recipe: Recipe,
    guest_dir: Path,
    package_scan: stdlib.ImportScan,
    cache_dir: Path | None = None,
    guest_stdlib: Path | None = None,
) -> tuple[frozenset[str], stdlib.ImportScan]:
    """The stdlib modules the image keeps for this guest code (and the guest's import scan).

    ``package_scan`` is the import scan of the third-party packages the image ships (taken
    from the package tree at build time; from the host's copies in the guard test).
    ``guest_stdlib``: the guest's stdlib directory when its Python is not the host's version.
    """
    local = ("guest", *(p.name for p in recipe.python.packages))
    guest_scan = stdlib.scan_imports(stdlib.python_files(guest_dir), local=local)
    scan = stdlib.ImportScan(
        guest_scan.statements | package_scan.statements,
        guest_scan.stdlib_roots | package_scan.stdlib_roots,
        guest_scan.other_roots | package_scan.other_roots,
    )
    kept = stdlib.closure(scan, recipe.stdlib.extra, recipe.stdlib.exclude, cache_dir, guest_stdlib)
    return kept, guest_scan


def _package_scan(base: layout.Segment) -> stdlib.ImportScan:
    """The third-party packages' import scan, saved with the base segment."""
    imports = base.info.get("package_imports")
    if not isinstance(imports, dict):
        raise ImageError("base segment has no package import scan; rebuild with --force")
    return stdlib.ImportScan(
        frozenset(imports["statements"]), frozenset(imports["stdlib_roots"]), frozenset()
    )


class ImageBuilder:
    """One build of one architecture; :meth:`ensure` is the whole job."""

    def __init__(
        self,
        arch: str = "aarch64",
        *,
        build_dir: Path | None = None,
        cache_dir: Path | None = None,
        guest_dir: Path = GUEST_DIR,
        progress: Progress | None = None,
        force: bool = False,
        refresh_pins: bool = False,
        refresh_stale_pins: bool | None = None,
    ) -> None:
        self.arch = arch
        self.out = (build_dir or DEFAULT_BUILD_DIR) / "images" / arch
        self.cache = cache_dir or cache.cache_root()
        self.guest_dir = guest_dir
        self.progress = progress or Progress(False)
        self.force = force
        self.refresh_pins = refresh_pins
        if refresh_stale_pins is None:
            refresh_stale_pins = os.environ.get(REFRESH_STALE_ENV, "") not in ("", "0")
        self.refresh_stale_pins = refresh_stale_pins
        self.store = cache.SegmentStore(self.out / "segments")

    # --- public --------------------------------------------------------------------------

    def ensure(self) -> GuestImage:
        """Build what is stale; return the image. With ``refresh_stale_pins`` (or
        ``STATEFS_QEMU_REFRESH_STALE_PINS=1``), a pinned version the archive no longer serves
        moves the pins forward (rewriting the lock file) instead of failing."""
        try:
            with cache.locked(self.out / ".build.lock"):
                try:
                    return self._ensure()
                except PinUnavailable as exc:
                    if not self.refresh_stale_pins:
                        raise
                    self.progress.note(
                        f"warning: {str(exc).splitlines()[0]}; refreshing the pins because "
                        f"{REFRESH_STALE_ENV} is set"
                    )
                    self.refresh_pins = True
                    return self._ensure()
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(Path(exc.filename or self.out), exc) from exc
            raise

    def image(self) -> GuestImage:
        return GuestImage(
            arch=self.arch,
            kernel=self.out / KERNEL_NAME,
            initramfs=self.out / INITRAMFS_NAME,
            manifest=self.out / manifest.MANIFEST_NAME,
        )

    # --- steps ---------------------------------------------------------------------------

    def _ensure(self) -> GuestImage:
        recipe = load_recipe(self.arch)
        if self.refresh_pins or not recipe.lock_path.is_file():
            self._pin(recipe)
        pins = lock.load(recipe.lock_path)
        if pins is None:
            raise ImageError(f"{recipe.lock_path} is missing after pinning")
        lock.check_matches(pins, lock.requested(recipe), recipe.lock_path)

        same_python = stdlib.host_can_compile(recipe.python.version)
        compiler = bytecode.label(recipe)
        if compiler == "none":
            log.info(
                "host Python is not %s and qemu-%s-static is not installed (qemu-user-static):"
                " shipping sources, the guest compiles them at every boot (slower under TCG)",
                recipe.python.version,
                recipe.arch,
            )
        base_key = keys.base_key(recipe, compiler=compiler)
        guest_key = keys.guest_key(self.guest_dir)
        image = self.image()
        previous = manifest.read(image.manifest)
        if (
            not self.force
            and previous is not None
            and previous.get("keys", {}).get("base") == base_key
            and previous.get("keys", {}).get("guest") == guest_key
        ):
            damage = manifest.output_problems(previous, self.out)
            if not damage:
                log.debug("image %s is up to date", self.out)
                return image
            message = (
                f"warning: the image in {self.out} is damaged ({'; '.join(damage)}): rebuilding"
            )
            if self.progress.enabled:
                self.progress.note(message)
            else:
                log.warning("%s", message)

        trees: list[PackageTree] = []

        def tree() -> PackageTree:
            """The package tree, unpacked (or fetched) only if a step needs it."""
            if not trees:
                trees.append(
                    package_tree(
                        recipe, pins, self.cache, lambda: self._fetch(recipe, pins), self.progress
                    )
                )
            return trees[0]

        maker = bytecode.LazyCompiler(recipe, lambda: tree().root, self.cache / "bytecode")
        try:
            return self._build(recipe, pins, image, base_key, guest_key, tree, same_python,
                               None if compiler == "none" else maker.pyc)  # fmt: skip
        finally:
            maker.close()

    def _build(
        self,
        recipe: Recipe,
        pins: lock.Lock,
        image: GuestImage,
        base_key: str,
        guest_key: str,
        tree: Callable[[], PackageTree],
        same_python: bool,
        pyc: layout.PycMaker,
    ) -> GuestImage:
        """Make the segments that are not cached and write the initramfs and manifest."""
        base = self._base(recipe, base_key, tree, pyc=pyc)
        with self.progress.step("stdlib closure"):
            guest_stdlib = None if same_python else tree().root / recipe.python.stdlib
            kept, guest_scan = kept_stdlib(
                recipe,
                self.guest_dir,
                _package_scan(base),
                self.cache / "stdlib-closure",
                guest_stdlib,
            )
            unshipped = sorted(set(guest_scan.other_roots) - set(recipe.python.optional))
            if unshipped:
                log.warning("guest/ imports %s, which the image does not ship", unshipped)
        stdlib_key = keys.stdlib_key(base_key, kept)
        std = None if self.force else self.store.load("stdlib", stdlib_key)
        if std is None:
            with self.progress.step(f"pack stdlib ({len(kept)} modules)"):
                std = layout.build_stdlib(recipe, tree().root, kept, base, pyc=pyc)
                self.store.save("stdlib", stdlib_key, std)

        with self.progress.step("pack guest/ and write initramfs"):
            guest = layout.build_guest(recipe, self.guest_dir, std, pyc=pyc)
            data = b"".join((base.data, std.data, guest.data, trailer()))
            cache.write_atomic(image.initramfs, data)
        manifest.write_image(
            image.manifest,
            recipe,
            pins,
            (base, std, guest),
            kernel_size=image.kernel.stat().st_size,
            initramfs=data,
            keys={"base": base_key, "stdlib": stdlib_key, "guest": guest_key},
        )
        self.progress.done(
            f"{self.out}: kernel {image.kernel.stat().st_size / 2**20:.1f} MiB, initramfs "
            f"{len(data) / 2**20:.1f} MiB"
        )
        return image

    def _base(
        self,
        recipe: Recipe,
        base_key: str,
        tree: Callable[[], PackageTree],
        *,
        pyc: layout.PycMaker,
    ) -> layout.Segment:
        """The base segment (cached by ``base_key``) and ``vmlinuz`` next to it."""
        base = None if self.force else self.store.load("base", base_key)
        if base is not None:
            if not self._kernel_matches(base):
                with self.progress.step("copy kernel"):
                    self._install_kernel(tree(), base)
                    self.store.save("base", base_key, base)
            return base
        packages = tree()
        with self.progress.step("pack base (busybox, python, libs)"):
            base = layout.build_base(
                recipe, packages.root, packages.release, packages.modules, pyc=pyc
            )
            package_scan = stdlib.scan_imports(
                layout.package_sources(packages.root, recipe),
                local=tuple(p.name for p in recipe.python.packages),
            )
            base.info["package_imports"] = {
                "statements": sorted(package_scan.statements),
                "stdlib_roots": sorted(package_scan.stdlib_roots),
            }
            base.info["kernel_release"] = packages.release
            self._install_kernel(packages, base)
            self.store.save("base", base_key, base)
        return base

    def _workspace(self, recipe: Recipe) -> AptWorkspace:
        sources = select_archive_sources(
            read_host_sources(), recipe.apt.suites, recipe.apt.components
        )
        workspace = AptWorkspace(
            self.cache / "apt" / recipe.arch, recipe.apt.architecture, sources, arch=recipe.arch
        )
        workspace.prepare()
        return workspace

    def _pin(self, recipe: Recipe) -> None:
        with cache.locked(self.cache / ".lock"):
            lock.pin(recipe, self._workspace(recipe), self.progress)

    def _fetch(self, recipe: Recipe, pins: lock.Lock) -> list[Path]:
        archives = self.cache / "apt" / recipe.arch / "archives"
        missing = [pin for pin in pins.pins if not (archives / pin.deb_name).is_file()]
        if missing:
            workspace = self._workspace(recipe)
            with self.progress.step("apt-get update (private)"):
                workspace.update()
            size = sum(pin.size for pin in missing) / 2**20
            with self.progress.step(f"download {len(missing)} packages ({size:.0f} MiB)"):
                workspace.download(missing)
        return [archives / pin.deb_name for pin in pins.pins]

    def _kernel_matches(self, base: layout.Segment) -> bool:
        try:
            return sha256_file(self.out / KERNEL_NAME) == base.info.get("kernel_sha256")
        except OSError:
            return False

    def _install_kernel(self, tree: PackageTree, base: layout.Segment) -> None:
        data = (tree.root / tree.kernel_image).read_bytes()
        cache.write_atomic(self.out / KERNEL_NAME, data)
        base.info["kernel_sha256"] = hashlib.sha256(data).hexdigest()
        base.info["kernel_image"] = tree.kernel_image


def load_image(directory: Path) -> GuestImage:
    """A built image directory used as it is (``--image-dir``): its kernel and initramfs,
    checked against its manifest; nothing is rebuilt. How QEMU boots it comes from the
    architecture's profile (:mod:`harness.vm.arch`), as for a built image.

    Raises :class:`ImageError` naming what is missing or damaged.
    """
    directory = Path(directory)
    data = manifest.read(directory / manifest.MANIFEST_NAME)
    if data is None:
        raise ImageError(
            f"{directory} is not a built image directory (no readable "
            f"{manifest.MANIFEST_NAME}): give the directory `make image` writes, "
            f"build/images/<arch>"
        )
    damage = manifest.output_problems(data, directory)
    if damage:
        raise ImageError(f"the image in {directory} is damaged: {'; '.join(damage)}")
    arch = data.get("arch")
    if not isinstance(arch, str):
        raise ImageError(f"{directory / manifest.MANIFEST_NAME} names no architecture")
    return GuestImage(
        arch=arch,
        kernel=directory / KERNEL_NAME,
        initramfs=directory / INITRAMFS_NAME,
        manifest=directory / manifest.MANIFEST_NAME,
    )


def ensure_image(
    arch: str = "aarch64", *, build_dir: Path | None = None, progress: bool = False
) -> GuestImage:
    """Build the image if it is missing or stale and return its paths.

    ``build_dir`` is the top build directory (default ``<repo>/build``); the image lands in
    ``<build_dir>/images/<arch>/``. When only ``guest/`` changed, only the initramfs is
    repacked. Raises :class:`~harness.image.errors.ImageError` with an actionable message.
    """
    return ImageBuilder(arch, build_dir=build_dir, progress=Progress(progress)).ensure()
