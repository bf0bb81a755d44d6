"""Hypothesis settings shared by the fuzz targets: bounded and reproducible in ``make test``,
scalable for deep campaigns.

``make test`` must stay fast and give the same result on every run, so every target uses
``derandomize=True`` (examples derived from the test itself), no example database (nothing
remembered between runs changes what runs) and a fixed example count sized to a few seconds.
A deep campaign multiplies the counts with ``STATEFS_FUZZ_SCALE=N`` and may set
``STATEFS_FUZZ_SEED`` to explore other examples (which turns derandomize off in favour of a
seeded random stream, still reproducible from the seed).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE_ENV = "STATEFS_FUZZ_SCALE"
SEED_ENV = "STATEFS_FUZZ_SEED"


def fuzz_scale() -> int:
    """The deep-campaign multiplier (1 in ``make test``)."""
    try:
        return max(1, int(os.environ.get(SCALE_ENV, "1")))
    except ValueError:
        return 1


def fuzz_settings(examples: int, **overrides: object) -> settings:
    """Settings for a target that tries ``examples`` inputs (times the scale)."""
    seeded = bool(os.environ.get(SEED_ENV))
    options: dict[str, object] = {
        "max_examples": examples * fuzz_scale(),
        "derandomize": not seeded,
        "database": None,
        "deadline": None,
        "print_blob": True,
        "suppress_health_check": list(HealthCheck),
    }
    options.update(overrides)
    return settings(**options)


def seed_decorator():
    """``hypothesis.seed`` for seeded deep runs, or an identity decorator."""
    from hypothesis import seed

    value = os.environ.get(SEED_ENV)
    if not value:
        return lambda function: function
    return seed(int(value))
