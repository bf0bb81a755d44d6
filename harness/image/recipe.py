"""The image recipe: ``images/<arch>.toml`` parsed into frozen, validated dataclasses.

The recipe is data so that adding an architecture (riscv64 `virt` from Debian trixie) means
writing a new file, not new code. It says what goes into the image; how QEMU boots an
architecture (machine, CPU, firmware, console) lives in :mod:`harness.vm.arch`. Validation
happens here, once, with messages that name the file and the key, so the rest of the builder
can trust what it gets.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.image.errors import RecipeError

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO_ROOT / "images"


@dataclass(frozen=True)
class AptSpec:
    architecture: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    kernel_metapackage: str
    packages: tuple[str, ...]


@dataclass(frozen=True)
class KernelSpec:
    image_glob: str
    modules: tuple[str, ...]


@dataclass(frozen=True)
class BusyboxSpec:
    path: str
    applets: tuple[str, ...]


@dataclass(frozen=True)
class PythonPackage:
    """A third-party package copied from a Debian package's tree into the guest's stdlib dir."""

    name: str
    source: str
    exclude: tuple[str, ...]
    require: tuple[str, ...]


@dataclass(frozen=True)
class PythonSpec:
    version: str
    interpreter: str
    links: tuple[str, ...]
    stdlib: str
    init_flags: str
    libdirs: tuple[str, ...]
    packages: tuple[PythonPackage, ...]
    #: Third-party modules guest/ imports only optionally (inside ``except ImportError``),
    #: deliberately not shipped: the build does not warn about them.
    optional: tuple[str, ...] = ()


@dataclass(frozen=True)
class StdlibSpec:
    extra: tuple[str, ...]
    exclude: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    arch: str
    path: Path
    apt: AptSpec
    kernel: KernelSpec
    busybox: BusyboxSpec
    python: PythonSpec
    stdlib: StdlibSpec
    #: The packages ship /bin, /sbin and /lib under /usr (Debian 13); the image links them.
    merged_usr: bool = False

    @property
    def lock_path(self) -> Path:
        """The checked-in pin file next to the recipe."""
        return self.path.with_suffix(".lock")


def recipe_path(arch: str, images_dir: Path = IMAGES_DIR) -> Path:
    return images_dir / f"{arch}.toml"


def available_arches(images_dir: Path = IMAGES_DIR) -> list[str]:
    return sorted(p.stem for p in images_dir.glob("*.toml"))


def load_recipe(arch: str, images_dir: Path = IMAGES_DIR) -> Recipe:
    """Read and validate ``images/<arch>.toml``."""
    path = recipe_path(arch, images_dir)
    if not path.is_file():
        known = ", ".join(available_arches(images_dir)) or "none"
        raise RecipeError(f"no recipe for arch {arch!r}: {path} does not exist (known: {known})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"{path}: {exc}") from exc
    return parse_recipe(data, path)


def parse_recipe(data: dict[str, Any], path: Path) -> Recipe:
    """Build a :class:`Recipe` from parsed TOML; every missing or mistyped key is an error."""
    reader = _Reader(path)
    arch = reader.string(data, "arch")
    if arch != path.stem:
        raise RecipeError(f"{path}: arch = {arch!r} but the file is named {path.name}")
    apt = reader.table(data, "apt")
    kernel = reader.table(data, "kernel")
    busybox = reader.table(data, "busybox")
    python = reader.table(data, "python")
    stdlib = reader.table(data, "stdlib")
    packages = []
    for name, spec in reader.table(python, "packages", "python").items():
        where = f"python.packages.{name}"
        packages.append(
            PythonPackage(
                name=name,
                source=reader.string(spec, "from", where),
                exclude=reader.strings(spec, "exclude", where, default=()),
                require=reader.strings(spec, "require", where, default=()),
            )
        )
    merged_usr = data.get("merged_usr", False)
    if not isinstance(merged_usr, bool):
        raise RecipeError(f"{path}: merged_usr must be true or false")
    return Recipe(
        arch=arch,
        path=path,
        merged_usr=merged_usr,
        apt=AptSpec(
            architecture=reader.string(apt, "architecture", "apt"),
            suites=reader.strings(apt, "suites", "apt"),
            components=reader.strings(apt, "components", "apt"),
            kernel_metapackage=reader.string(apt, "kernel_metapackage", "apt"),
            packages=reader.strings(apt, "packages", "apt"),
        ),
        kernel=KernelSpec(
            image_glob=reader.string(kernel, "image", "kernel"),
            modules=reader.strings(kernel, "modules", "kernel", default=()),
        ),
        busybox=BusyboxSpec(
            path=reader.string(busybox, "path", "busybox"),
            applets=reader.strings(busybox, "applets", "busybox"),
        ),
        python=PythonSpec(
            version=reader.string(python, "version", "python"),
            interpreter=reader.string(python, "interpreter", "python"),
            links=reader.strings(python, "links", "python", default=()),
            stdlib=reader.string(python, "stdlib", "python"),
            init_flags=reader.string(python, "init_flags", "python"),
            libdirs=reader.strings(python, "libdirs", "python"),
            packages=tuple(packages),
            optional=reader.strings(python, "optional", "python", default=()),
        ),
        stdlib=StdlibSpec(
            extra=reader.strings(stdlib, "extra", "stdlib", default=()),
            exclude=reader.strings(stdlib, "exclude", "stdlib", default=()),
        ),
    )


class _Reader:
    """Typed access to TOML tables; errors name the recipe file and the dotted key."""

    _MISSING = object()

    def __init__(self, path: Path) -> None:
        self.path = path

    def _get(self, table: dict[str, Any], key: str, where: str, default: Any) -> Any:
        value = table.get(key, default)
        if value is self._MISSING:
            raise RecipeError(f"{self.path}: missing key {self._name(where, key)}")
        return value

    def _name(self, where: str, key: str) -> str:
        return f"{where}.{key}" if where else key

    def table(self, table: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
        value = self._get(table, key, where, self._MISSING)
        if not isinstance(value, dict):
            raise RecipeError(f"{self.path}: {self._name(where, key)} must be a table")
        return value

    def string(self, table: dict[str, Any], key: str, where: str = "") -> str:
        value = self._get(table, key, where, self._MISSING)
        if not isinstance(value, str) or not value:
            raise RecipeError(f"{self.path}: {self._name(where, key)} must be a non-empty string")
        return value

    def strings(
        self, table: dict[str, Any], key: str, where: str = "", default: Any = _MISSING
    ) -> tuple[str, ...]:
        value = self._get(table, key, where, default)
        if not isinstance(value, list | tuple) or not all(
            isinstance(item, str) and item for item in value
        ):
            raise RecipeError(f"{self.path}: {self._name(where, key)} must be a list of strings")
        return tuple(value)
