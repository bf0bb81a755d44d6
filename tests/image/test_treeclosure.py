"""The stdlib closure walked over a guest stdlib tree of another Python version."""

import lzma
from pathlib import Path

from harness.image import kmod
from harness.image.layout import canonical
from harness.image.treeclosure import imports_of, tree_closure


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_imports_follow_the_guest_sources_not_the_hosts(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "hashlib.py": "def f():\n    import _sha2\n",
            "_sha2.py": "",
            "pkg/__init__.py": "from . import sub\nfrom .other import thing\n",
            "pkg/sub.py": "import os\n",
            "pkg/other.py": "",
            "os.py": "",
            "email/__init__.py": "",
            "unused.py": "",
            "lib-dynload/_json.cpython-313-riscv64-linux-gnu.so": "",
        },
    )
    kept = tree_closure(["hashlib", "pkg", "email", "_json"], ["email"], root)
    assert kept == {"hashlib", "_sha2", "pkg", "pkg.sub", "pkg.other", "os", "_json"}


def test_newer_syntax_is_scanned_line_by_line() -> None:
    source = "type Alias = int\nimport a, b as c\nfrom .x import (y,\n  z)\n"
    assert imports_of(source, "pkg") >= {"a", "b", "pkg.x", "pkg.x.y"}


def test_xz_modules_are_indexed_and_decompressed(tmp_path: Path) -> None:
    moddir = tmp_path / "6.12-riscv64"
    ko = moddir / "kernel" / "drivers" / "virtio_blk.ko.xz"
    ko.parent.mkdir(parents=True)
    ko.write_bytes(lzma.compress(b"\x7fELF-module", format=lzma.FORMAT_XZ))
    assert kmod.index(moddir) == {"virtio_blk": "kernel/drivers/virtio_blk.ko.xz"}
    assert kmod.decompress(moddir, ["kernel/drivers/virtio_blk.ko.xz"]) == [
        "kernel/drivers/virtio_blk.ko"
    ]
    assert (moddir / "kernel" / "drivers" / "virtio_blk.ko").read_bytes() == b"\x7fELF-module"
    assert not ko.exists()


def test_merged_usr_maps_top_level_dirs_under_usr() -> None:
    assert canonical("/lib/ld-linux-riscv64-lp64d.so.1", True) == (
        "usr/lib/ld-linux-riscv64-lp64d.so.1"
    )
    assert canonical("bin/busybox", True) == "usr/bin/busybox"
    assert canonical("etc/x", True) == "etc/x"
    assert canonical("/lib/ld-linux-aarch64.so.1", False) == "lib/ld-linux-aarch64.so.1"
