"""``bench/`` runs from the repository root (``python -m bench``) and is not an installed
package, so make it importable here however pytest was started (``python -m pytest`` puts the
working directory on ``sys.path``, the ``pytest`` script does not)."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
