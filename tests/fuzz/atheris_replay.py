"""Coverage-guided fuzzing of journal replay over noise, damaged journals and forged records.

    .venv/bin/python tests/fuzz/atheris_replay.py -max_total_time=600 build/fuzz/replay

(see docs/testing/robustness.md; needs `pip install atheris`).
"""

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]

from support.atheris_main import main  # noqa: E402 - the path above makes it importable

if __name__ == "__main__":
    main("replay")
