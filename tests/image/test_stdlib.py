"""The kept-stdlib computation and the bytecode the image ships."""

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

from harness.image import stdlib


def _write(root: Path, files: dict[str, str]) -> list[Path]:
    paths = []
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths


def test_scan_finds_absolute_imports_everywhere(tmp_path: Path) -> None:
    files = _write(
        tmp_path,
        {
            "guest/a.py": "import os, json.decoder\nfrom . import b\nfrom guest.c import x\n",
            "guest/b.py": "def f():\n    import hmac\n    from collections import abc, deque\n",
            "guest/c.py": "import crcmod\ntry:\n    import tomllib\nexcept ImportError:\n    x = 0",
        },
    )
    scan = stdlib.scan_imports(files, local=("guest",))
    assert scan.stdlib_roots == {"os", "json", "hmac", "collections", "tomllib"}
    assert scan.other_roots == {"crcmod"}
    assert "import json.decoder" in scan.statements
    assert "from collections import abc, deque" in scan.statements
    assert not any("guest" in s for s in scan.statements)


def test_closure_follows_imports_and_honours_excludes(tmp_path: Path) -> None:
    scan = stdlib.ImportScan(frozenset({"import json"}), frozenset({"json"}), frozenset())
    kept = stdlib.closure(scan, ["encodings.utf_8"], ["re"], cache_dir=tmp_path)
    assert {"json", "json.decoder", "json.encoder", "encodings.utf_8"} <= kept
    assert "re" not in kept
    assert "re._parser" not in kept
    # Cached: the same inputs give the same answer from the cache file.
    assert len(list(tmp_path.glob("*.json"))) == 1
    assert stdlib.closure(scan, ["encodings.utf_8"], ["re"], cache_dir=tmp_path) == kept


def test_a_direct_import_beats_an_exclude() -> None:
    scan = stdlib.ImportScan(frozenset({"import base64"}), frozenset({"base64"}), frozenset())
    assert "base64" in stdlib.closure(scan, [], ["base64"])


def test_locate_maps_names_to_files(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "os.py": "",
            "json/__init__.py": "",
            "json/decoder.py": "",
            "lib-dynload/_json.cpython-311-aarch64-linux-gnu.so": "",
        },
    )
    files, unfound = stdlib.locate(["os", "json", "json.decoder", "_json", "posix"], tmp_path)
    by_name = {f.module: f for f in files}
    assert by_name["os"].relpath == "os.pyc"
    assert by_name["os"].compile
    assert by_name["json"].relpath == "json/__init__.pyc"
    assert by_name["json.decoder"].relpath == "json/decoder.pyc"
    assert by_name["_json"].relpath == "lib-dynload/_json.cpython-311-aarch64-linux-gnu.so"
    assert not by_name["_json"].compile
    assert unfound == ["posix"]


def test_guest_builtins_are_read_from_pyinit_symbols() -> None:
    blob = b"\0PyInit__socket\0junk\0PyInit_select\0PyInit_\0"
    names = stdlib.guest_builtins(blob)
    assert {"_socket", "select", "sys", "builtins"} <= names
    assert "" not in names


def test_unchecked_pyc_loads_without_its_source(tmp_path: Path) -> None:
    source = b"VALUE = 6 * 7\n"
    data = stdlib.pyc_bytes(source, "/usr/lib/python3.11/answer.py")
    assert data[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(data[4:8], "little") == 0b01  # hash-based, unchecked
    (tmp_path / "answer.pyc").write_bytes(data)
    loader = importlib.machinery.SourcelessFileLoader("answer", str(tmp_path / "answer.pyc"))
    spec = importlib.util.spec_from_loader("answer", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    assert module.VALUE == 42
    assert module.__spec__.name == "answer"


def test_host_can_compile_only_for_its_own_minor_version() -> None:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert stdlib.host_can_compile(here)
    assert not stdlib.host_can_compile("2.7")
