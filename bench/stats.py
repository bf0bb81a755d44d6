"""Samples, medians and their spread.

Every figure is the median of several independent samples, kept with the samples themselves
and the load each was taken under, so a reader of the JSON can see how noisy it was instead of
trusting one number.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.env import Load


@dataclass
class Figure:
    """Repeated samples of one quantity (a rate in ops/s, or a time in seconds)."""

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    loads: list[Load] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)

    def add(self, value: float, load: Load | None = None) -> None:
        self.samples.append(value)
        if load is not None:
            self.loads.append(load)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def spread(self) -> float:
        """(max - min) / median: above ~0.3 the figure is noisy and worth re-running."""
        if len(self.samples) < 2 or not self.median:
            return 0.0
        return (max(self.samples) - min(self.samples)) / self.median

    @property
    def load(self) -> Load | None:
        """The worst load any sample saw (what the figure must be read against)."""
        if not self.loads:
            return None
        busy = [load.busy for load in self.loads if load.busy == load.busy]  # NaN: unknown
        return Load(max(load.loadavg1 for load in self.loads), max(busy, default=float("nan")))

    def as_dict(self) -> dict[str, object]:
        worst = self.load
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": min(self.samples) if self.samples else None,
            "max": max(self.samples) if self.samples else None,
            "spread": round(self.spread, 3),
            "samples": self.samples,
            "loadavg1_max": None if worst is None else worst.loadavg1,
            "busy_max": None if worst is None or worst.busy != worst.busy else round(worst.busy, 3),
            **self.extra,
        }


def rate(ops: int, seconds: float) -> float:
    return ops / seconds if seconds > 0 else float("inf")


def fmt_rate(value: float) -> str:
    """Ops/s with a unit a human reads at a glance (412, 12.3k, 4.56M)."""
    if value != value:  # NaN
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def fmt_seconds(value: float) -> str:
    if value != value:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.0f} us"
    if value < 1.0:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.2f} s"


def fmt_bytes(value: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"
