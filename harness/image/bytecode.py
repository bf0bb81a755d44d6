"""Bytecode for the guest's Python, compiled while the image is built.

CPython bytecode is portable only within one minor version (one magic number), and a guest
that compiles its modules at every boot pays for it under TCG (each boot starts from a fresh
initramfs, so nothing compiled is kept). So the image ships unchecked-hash ``.pyc`` files
(PEP 552) whenever the build can run a compiler of the guest's version:

* ``host``: the host interpreter itself, when its minor version is the guest's (the aarch64
  image: Debian 12's CPython 3.11 on both sides);
* ``guest``: otherwise the guest's own interpreter, from the unpacked package tree, run by
  QEMU's user-mode emulator (``qemu-<arch>-static``, Debian's ``qemu-user-static``): exactly
  the compiler the guest would use. One process serves the whole build, and every result is
  cached by its source's hash, so a changed guest file costs one compile, not sixty.

With neither, the image ships sources and says so (the riscv64 image without
``qemu-user-static``): slower boots, the same behaviour.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

from harness.image import elf, stdlib
from harness.image.errors import ImageError
from harness.image.layout import canonical
from harness.image.recipe import Recipe

#: The compile server run inside the guest's interpreter: standard library only, and written
#: for any CPython 3.8+. Requests and replies are length-prefixed on stdin/stdout.
_SERVER = r"""
import importlib.util, marshal, struct, sys
r, w = sys.stdin.buffer, sys.stdout.buffer
magic = importlib.util.MAGIC_NUMBER
w.write(magic); w.flush()
while True:
    head = r.read(8)
    if len(head) < 8:
        break
    path_len, source_len = struct.unpack("<II", head)
    path = r.read(path_len).decode("utf-8"); source = r.read(source_len)
    try:
        code = compile(source, path, "exec", dont_inherit=True, optimize=0)
        out = magic + (1).to_bytes(4, "little") + importlib.util.source_hash(source)
        out += marshal.dumps(code); status = 0
    except (SyntaxError, ValueError) as exc:
        out = ("%s: %s" % (type(exc).__name__, exc)).encode("utf-8"); status = 1
    w.write(struct.pack("<BI", status, len(out)) + out); w.flush()
"""


class Compiler(Protocol):
    """Makes the unchecked-hash ``.pyc`` of a source, named ``guest_path`` in tracebacks."""

    label: str

    def pyc(self, source: bytes, guest_path: str) -> bytes: ...

    def close(self) -> None: ...


class HostCompiler:
    """The host interpreter, of the guest's minor version."""

    label = "host"

    def pyc(self, source: bytes, guest_path: str) -> bytes:
        return stdlib.pyc_bytes(source, guest_path)

    def close(self) -> None:
        pass


class GuestCompiler:
    """The guest's interpreter under ``qemu-<arch>-static``, started on the first request
    that the cache cannot answer."""

    def __init__(self, argv: list[str], env: dict[str, str], cache_dir: Path) -> None:
        self.label = "guest"
        self._argv = argv
        self._env = env
        self._cache = cache_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._magic = b""

    def pyc(self, source: bytes, guest_path: str) -> bytes:
        key = hashlib.sha256(guest_path.encode() + b"\0" + source).hexdigest()
        cached = self._cache / key[:2] / f"{key}.pyc"
        if cached.is_file():
            return cached.read_bytes()
        data = self._compile(source, guest_path)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, cached)
        return data

    def _compile(self, source: bytes, guest_path: str) -> bytes:
        stdin, stdout = self._start()
        path = guest_path.encode("utf-8")
        try:
            stdin.write(struct.pack("<II", len(path), len(source)) + path + source)
            stdin.flush()
            head = stdout.read(5)
            if len(head) == 5:
                status, size = struct.unpack("<BI", head)
                body = stdout.read(size)
                if len(body) == size and status == 0:
                    return body
                if len(body) == size:
                    raise ImageError(f"the guest's Python cannot compile {guest_path}: {body!r}")
        except BrokenPipeError:
            pass
        raise ImageError(f"the guest's Python compiler stopped: {self._stop_for_error()}")

    def _start(self) -> tuple[IO[bytes], IO[bytes]]:
        if self._process is None:
            try:
                self._process = subprocess.Popen(
                    self._argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=self._env,
                )
            except OSError as exc:
                raise ImageError(f"cannot run {self._argv[0]}: {exc}") from None
        stdin, stdout = self._process.stdin, self._process.stdout
        if stdin is None or stdout is None:  # not with PIPE; checked for the type checker
            raise ImageError("the guest's Python compiler has no pipes")
        if not self._magic:
            self._magic = stdout.read(4)
            if len(self._magic) != 4:
                raise ImageError(f"the guest's Python did not start: {self._stop_for_error()}")
        return stdin, stdout

    def _stop_for_error(self) -> str:
        """Stop the compiler and return the end of what it said on stderr."""
        if self._process is None or self._process.stderr is None:
            return "not started"
        self._process.kill()
        self._process.wait()
        said = self._process.stderr.read().decode("utf-8", "replace").strip()
        self._process = None
        return said[-500:] or "no output"

    def close(self) -> None:
        if self._process is not None:
            if self._process.stdin is not None:
                self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            for stream in (self._process.stdout, self._process.stderr):
                if stream is not None:
                    stream.close()
            self._process = None


def user_emulator(arch: str) -> str | None:
    """QEMU's user-mode emulator for ``arch`` on PATH (``qemu-riscv64-static``), if any."""
    return shutil.which(f"qemu-{arch}-static")


def guest_compiler(
    recipe: Recipe, package_tree: Callable[[], Path], cache_dir: Path
) -> GuestCompiler | None:
    """The guest's interpreter from the package tree under the user-mode emulator, or None
    (no emulator: the tree is then not asked for, so not unpacked)."""
    emulator = user_emulator(recipe.arch)
    if emulator is None:
        return None
    tree = package_tree()
    python = recipe.python
    interpreter = tree / python.interpreter
    loader = elf.interpreter(interpreter.read_bytes())
    if not loader:
        return None
    libdirs = ":".join(str(tree / canonical(d, recipe.merged_usr)) for d in python.libdirs)
    argv = [
        emulator,
        str(tree / canonical(loader, recipe.merged_usr)),
        "--library-path",
        libdirs,
        str(interpreter),
        "-S",  # no site: nothing but the standard library
        "-s",
        "-B",
        "-c",
        _SERVER,
    ]
    # The interpreter finds its standard library from PYTHONHOME (it runs from the tree, not
    # from its guest path), so -I and -E, which would ignore it, are not used.
    home = tree / Path(python.stdlib).parent.parent
    env = {"PYTHONHOME": str(home), "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    return GuestCompiler(argv, env, cache_dir / f"{recipe.arch}-{python.version}")


def choose(recipe: Recipe, package_tree: Callable[[], Path], cache_dir: Path) -> Compiler | None:
    """The compiler this build can use (module docstring), or None: ship sources.
    ``package_tree`` is called only when the guest's own interpreter is needed."""
    if stdlib.host_can_compile(recipe.python.version):
        return HostCompiler()
    return guest_compiler(recipe, package_tree, cache_dir)


def label(recipe: Recipe) -> str:
    """Which compiler :func:`choose` will pick, decided without the package tree (the image's
    cache keys include it, so installing ``qemu-user-static`` rebuilds with bytecode)."""
    if stdlib.host_can_compile(recipe.python.version):
        return "host"
    return "guest" if user_emulator(recipe.arch) else "none"


class LazyCompiler:
    """The build's compiler, chosen and started on the first ``.pyc`` a step asks for: a
    build whose segments all come from the cache unpacks no tree and starts no emulator."""

    def __init__(self, recipe: Recipe, tree: Callable[[], Path], cache_dir: Path) -> None:
        self._recipe = recipe
        self._tree = tree
        self._cache_dir = cache_dir
        self._compiler: Compiler | None = None

    def pyc(self, source: bytes, guest_path: str) -> bytes:
        if self._compiler is None:
            self._compiler = choose(self._recipe, self._tree, self._cache_dir)
            if self._compiler is None:
                raise ImageError(f"no compiler for Python {self._recipe.python.version}")
        return self._compiler.pyc(source, guest_path)

    def close(self) -> None:
        if self._compiler is not None:
            self._compiler.close()
