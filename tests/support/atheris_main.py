"""Run one of ``support.atheris_targets`` under atheris (libFuzzer), with guest/ instrumented.

Called by the ``tests/fuzz/atheris_*.py`` entry points; every libFuzzer flag passes through
(``-runs=N``, ``-max_total_time=S``, a corpus directory, ``-seed=N``, ...). A corpus
directory that does not exist yet is created (libFuzzer would refuse it): the first run of
``atheris_frames.py ... build/fuzz/frames`` starts an empty corpus there.
"""

from __future__ import annotations

import os
import sys


def _make_corpus_dirs(argv: list[str]) -> None:
    """Create the positional (corpus) directories that are missing. A positional argument
    that names an existing file is an input to re-run, and is left alone."""
    for arg in argv[1:]:
        if not arg.startswith("-") and not os.path.exists(arg):
            os.makedirs(arg)


def main(name: str) -> None:
    import atheris

    with atheris.instrument_imports(include=["guest"]):
        from support.atheris_targets import TARGETS

    target = TARGETS[name]
    _make_corpus_dirs(sys.argv)
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
