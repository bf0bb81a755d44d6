"""Run one of ``support.atheris_targets`` under atheris (libFuzzer), with guest/ instrumented.

Called by the ``tests/fuzz/atheris_*.py`` entry points; every libFuzzer flag passes through
(``-runs=N``, ``-max_total_time=S``, a corpus directory, ``-seed=N``, ...).
"""

from __future__ import annotations

import sys


def main(name: str) -> None:
    import atheris

    with atheris.instrument_imports(include=["guest"]):
        from support.atheris_targets import TARGETS

    target = TARGETS[name]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
