"""Figures in the docs, written by the command that measured them, never typed.

A doc marks a block with two HTML comments, ``<!-- figures:NAME -->`` and
``<!-- /figures:NAME -->``; :func:`update_block` replaces what lies between with the lines
given (a fenced block: the command, its table and its verdict). A doc without the markers is
an error, so a renamed section cannot silently stop being updated.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import ConfigError


def update_block(path: Path, name: str, lines: list[str]) -> None:
    """Replace the block ``name`` of ``path`` with ``lines`` (module docstring)."""
    begin, end = f"<!-- figures:{name} -->", f"<!-- /figures:{name} -->"
    text = path.read_text()
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ConfigError(f"{path}: needs exactly one {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    body = "\n".join(["", "```", *lines, "```", ""])
    path.write_text(f"{head}{begin}{body}{end}{tail}")
