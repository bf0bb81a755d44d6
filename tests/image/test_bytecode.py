"""Bytecode for the guest's Python: who compiles it, and the compile server's protocol.

The guest compiler runs the guest's own interpreter under QEMU's user-mode emulator; here the
host's interpreter stands in for it (same protocol, same server code), so the protocol, the
cache and the failure paths are checked without an emulator. The riscv64 lane boots an image
whose bytecode the real emulator made.
"""

from __future__ import annotations

import importlib.util
import marshal
import sys
from pathlib import Path

import pytest

from harness.image import bytecode, stdlib
from harness.image.errors import ImageError
from harness.image.recipe import load_recipe


def server(cache: Path, argv: list[str] | None = None) -> bytecode.GuestCompiler:
    argv = argv or [sys.executable, "-S", "-s", "-B", "-c", bytecode._SERVER]
    return bytecode.GuestCompiler(argv, {"PATH": "/usr/bin:/bin"}, cache)


def test_the_server_makes_the_same_pyc_as_the_host_and_caches_it(tmp_path: Path) -> None:
    compiler = server(tmp_path)
    source = b"ANSWER = 6 * 7\n"
    try:
        made = compiler.pyc(source, "/usr/lib/python3/x.py")
    finally:
        compiler.close()
    host = stdlib.pyc_bytes(source, "/usr/lib/python3/x.py")
    # The header (magic, unchecked-hash flags, source hash) is the host's byte for byte; the
    # code object is equal (marshal's bytes may differ with reference counts).
    assert made[:16] == host[:16]
    assert made[:4] == importlib.util.MAGIC_NUMBER
    assert marshal.loads(made[16:]) == marshal.loads(host[16:])
    namespace: dict[str, object] = {}
    exec(marshal.loads(made[16:]), namespace)
    assert namespace["ANSWER"] == 42
    # A second build asks again: the cache answers, no interpreter is started (this one
    # could not start at all).
    again = server(tmp_path, ["/nonexistent/qemu-riscv64-static"])
    assert again.pyc(source, "/usr/lib/python3/x.py") == made
    with pytest.raises(ImageError, match="cannot run /nonexistent/qemu-riscv64-static"):
        again.pyc(b"OTHER = 1\n", "/usr/lib/python3/x.py")


def test_a_source_that_does_not_compile_is_an_error_naming_it(tmp_path: Path) -> None:
    compiler = server(tmp_path)
    try:
        with pytest.raises(ImageError, match=r"cannot compile /g/bad\.py: .*SyntaxError"):
            compiler.pyc(b"def broken(:\n", "/g/bad.py")
        assert compiler.pyc(b"X = 1\n", "/g/good.py")  # the server keeps serving
    finally:
        compiler.close()


def test_an_interpreter_that_dies_is_an_error_with_what_it_said(tmp_path: Path) -> None:
    dying = [sys.executable, "-c", "import sys; sys.stderr.write('no libc here'); sys.exit(3)"]
    with pytest.raises(ImageError, match="did not start: no libc here"):
        server(tmp_path, dying).pyc(b"X = 1\n", "/g/x.py")


def test_who_compiles_which_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """aarch64: the host (3.11 on both sides); riscv64 (3.13): the guest's interpreter when
    qemu-riscv64-static is installed, else nobody (sources only)."""
    aarch64, riscv64 = load_recipe("aarch64"), load_recipe("riscv64")
    assert stdlib.host_can_compile(aarch64.python.version)
    assert bytecode.label(aarch64) == "host"
    monkeypatch.setattr(bytecode.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert bytecode.label(riscv64) == "guest"
    monkeypatch.setattr(bytecode.shutil, "which", lambda name: None)
    assert bytecode.label(riscv64) == "none"
    asked: list[str] = []
    assert bytecode.choose(riscv64, lambda: asked.append("tree") or Path("/x"), Path("/x")) is None
    assert asked == []  # no emulator: the package tree is not unpacked for nothing


@pytest.mark.network
def test_the_image_ships_bytecode_whenever_a_compiler_exists(guest_image, qemu_settings) -> None:
    """The image of the session's architecture (``--qemu-arch``; the riscv64 lane runs this
    too): sourceless stdlib ``.pyc`` and the guest's ``__pycache__`` when the build has a
    compiler of the guest's Python, sources only when it has none, never a mix."""
    from harness.image.cpio import read_entries

    recipe = load_recipe(qemu_settings.arch)
    names = {entry.name for entry in read_entries(Path(guest_image.initramfs).read_bytes())}
    stdlib_dir = recipe.python.stdlib
    tag = "cpython-" + recipe.python.version.replace(".", "")
    guest_pyc = f"{stdlib_dir}/guest/statefs/__pycache__/store.{tag}.pyc"
    if bytecode.label(recipe) == "none":
        assert guest_pyc not in names and f"{stdlib_dir}/os.py" in names
        assert not any(name.endswith(".pyc") for name in names)
    else:
        assert guest_pyc in names
        assert f"{stdlib_dir}/os.pyc" in names and f"{stdlib_dir}/os.py" not in names
