"""Pieces of the initramfs layout that need no package tree."""

import importlib.util
from pathlib import Path

from harness.image import layout, stdlib
from harness.image.cpio import CpioWriter, read_entries, trailer
from harness.image.recipe import load_recipe


def test_init_is_a_python_script_with_fast_start_flags() -> None:
    recipe = load_recipe("aarch64")
    script = layout.init_script(recipe).decode()
    first, *rest = script.splitlines()
    assert first == f"#!/usr/bin/python3 {recipe.python.init_flags}"
    assert "from guest.init.pid1 import main" in rest
    compile(script, "init", "exec")


def test_guest_segment_ships_sources_and_bytecode(tmp_path: Path) -> None:
    recipe = load_recipe("aarch64")
    guest = tmp_path / "guest"
    (guest / "init").mkdir(parents=True)
    (guest / "__init__.py").write_text("")
    (guest / "init" / "pid1.py").write_text("ANSWER = 42\n")
    (guest / "init" / "__pycache__").mkdir()
    (guest / "init" / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"old")
    base = CpioWriter()
    base.directory("usr/lib/python3.11")
    previous = layout.Segment(base.getvalue(), base.dirs, base.next_ino)

    segment = layout.build_guest(recipe, guest, previous, pyc=stdlib.pyc_bytes)
    entries = {e.name: e for e in read_entries(previous.data + segment.data + trailer())}

    root = "usr/lib/python3.11/guest"
    assert entries[f"{root}/init/pid1.py"].data == b"ANSWER = 42\n"
    pyc = entries[f"{root}/init/__pycache__/pid1.cpython-311.pyc"].data
    assert pyc[:4] == importlib.util.MAGIC_NUMBER
    assert f"{root}/__pycache__/__init__.cpython-311.pyc" in entries
    assert not any("stale" in name for name in entries)
    assert segment.info == {"files": 2}
    inos = [e.ino for e in entries.values()]
    assert len(inos) == len(set(inos))


def test_guest_segment_without_bytecode(tmp_path: Path) -> None:
    recipe = load_recipe("aarch64")
    (tmp_path / "guest").mkdir()
    (tmp_path / "guest" / "__init__.py").write_text("")
    empty = layout.Segment(b"", frozenset(), 1)
    segment = layout.build_guest(recipe, tmp_path / "guest", empty, pyc=None)
    names = [e.name for e in read_entries(segment.data + trailer())]
    assert names[-1] == "usr/lib/python3.11/guest/__init__.py"
    assert not any(name.endswith(".pyc") for name in names)
