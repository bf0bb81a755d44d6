"""Helpers shared by the power-cut tests (imported by name: this directory is on sys.path)."""

from __future__ import annotations


def pattern(byte: int, length: int) -> bytes:
    """``length`` bytes of ``byte``: writes that are easy to tell apart in a dump."""
    return bytes([byte]) * length
