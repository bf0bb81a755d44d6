"""Guard: every stdlib module the guest code loads must be in the image's kept set.

The kept set is a static closure (see harness/image/stdlib.py); this test catches what a static
scan cannot see, like an excluded module that turns out to be needed at import time, or a
module imported by a computed name. It imports every module under guest/ in a fresh
interpreter started the way the guest's /init starts (isolated, no site) and compares.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

from harness.image import stdlib
from harness.image.build import GUEST_DIR, kept_stdlib
from harness.image.recipe import REPO_ROOT, load_recipe

# Imports nothing itself (no json, no importlib), so what it reports is what guest code loads.
PROBE = r"""
import sys
sys.path[:0] = sys.argv[2].split("\n")
absent = set(sys.argv[3].split(",")) - {""}


class Absent:  # the recipe's optional modules are not in the image: import as the guest would
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in absent:
            raise ImportError(f"{name} is not in the image")
        return None


sys.meta_path.insert(0, Absent())
failed = []
for name in sys.argv[1].split(","):
    try:
        __import__(name)
    except Exception as exc:
        failed.append(f"failed {name}: {type(exc).__name__}: {exc}")
for name, module in sorted(sys.modules.items()):
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None)
    if spec is None and getattr(module, "__file__", None) is None:
        print("virtual", name)  # e.g. typing.io: made by typing itself, no file to ship
    else:
        print("frozen" if origin == "frozen" else "loaded", name)
print("\n".join(failed))
"""


#: Loaded on the host, deliberately absent from the image, and imported by the stdlib inside a
#: try/except that falls back: hashlib uses OpenSSL's _hashlib when present, else its builtin
#: _sha256/_sha512 (which the guest uses; keystored's Ed25519 proves it in every boot).
OPTIONAL_IN_GUEST = {"_hashlib"}


def _guest_modules() -> list[str]:
    names = []
    for path in stdlib.python_files(GUEST_DIR):
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def _package_roots(recipe) -> list[Path]:
    roots = []
    for package in recipe.python.packages:
        spec = importlib.util.find_spec(package.name)
        message = f"{package.name} must be installed on the host (a project dependency)"
        assert spec is not None, message
        if spec.submodule_search_locations:
            roots.append(Path(next(iter(spec.submodule_search_locations))))
        else:  # a single-module package such as six.py
            roots.append(Path(spec.origin))
    return roots


def _package_scan(recipe) -> stdlib.ImportScan:
    """Imports of the third-party packages the image ships, from the host's copies."""
    files = []
    for package, root in zip(recipe.python.packages, _package_roots(recipe), strict=True):
        files += [p for p in stdlib.python_files(root) if p.name not in package.exclude]
    return stdlib.scan_imports(files, local=tuple(p.name for p in recipe.python.packages))


def test_every_stdlib_module_guest_code_loads_is_kept() -> None:
    recipe = load_recipe("aarch64")
    kept, _ = kept_stdlib(recipe, GUEST_DIR, _package_scan(recipe))
    modules = _guest_modules()
    path = [str(REPO_ROOT), *(str(root.parent) for root in _package_roots(recipe))]
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-B",
            "-c",
            PROBE,
            ",".join(modules),
            "\n".join(path),
            ",".join(recipe.python.optional),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split(" ", 1) for line in result.stdout.splitlines() if line]
    failed = [rest for kind, rest in lines if kind == "failed"]
    assert not failed, f"guest modules that do not import on the host: {failed}"
    host_builtin = set(sys.builtin_module_names)
    frozen = {rest for kind, rest in lines if kind == "frozen"}
    missing = sorted(
        name
        for kind, name in lines
        if kind == "loaded"
        and stdlib.is_stdlib(name)
        and name not in kept
        and name not in host_builtin
        and name not in frozen
        and name != "__main__"
        and name not in OPTIONAL_IN_GUEST
    )
    assert not missing, (
        f"guest code loads stdlib modules the image would not ship: {missing}. If a module is "
        "in [stdlib].exclude of images/aarch64.toml, take it out; if it is imported by a "
        "computed name, add it to [stdlib].extra."
    )
