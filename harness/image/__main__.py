"""``python -m harness.image``: the image builder's CLI (same as ``python -m harness image``)."""

from harness.image.cli import main

raise SystemExit(main())
