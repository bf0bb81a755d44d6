"""The targets of issue 6, judged on measured figures: met or missed, and by how much.

A target is data (what, the bound, the measured value, which way is better), so the same
verdicts go to stdout, to the JSON and to the README without being re-derived by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.stats import fmt_rate, fmt_seconds


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: float
    bound: float
    higher_is_better: bool
    unit: str = ""
    note: str = ""

    @property
    def met(self) -> bool:
        if self.measured != self.measured:  # NaN: not measured
            return False
        return self.measured >= self.bound if self.higher_is_better else self.measured <= self.bound

    @property
    def margin(self) -> float:
        """measured / bound for higher-is-better, bound / measured otherwise (>= 1 means met)."""
        if self.higher_is_better:
            return self.measured / self.bound if self.bound else float("inf")
        return self.bound / self.measured if self.measured else float("inf")

    def describe(self) -> str:
        verdict = "MET   " if self.met else "MISSED"
        if self.met:
            how = f"{self.margin:.2f}x the bound"
        elif self.higher_is_better:
            how = f"{(1 - self.margin) * 100:.0f}% short"
        else:
            how = f"{(1 / self.margin - 1) * 100:.0f}% over"
        note = f"  ({self.note})" if self.note else ""
        values = f"{self.show(self.measured)} vs {self.show(self.bound)}"
        return f"{verdict} {self.target}: {values}, {how}{note}"

    def show(self, value: float) -> str:
        if self.unit == "ops/s":
            return f"{fmt_rate(value)} ops/s"
        if self.unit == "s":
            return fmt_seconds(value)
        if self.unit == "x":
            return f"{value:.2f}x"
        return f"{value:g}{self.unit}"

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "met": self.met, "margin": round(self.margin, 3)}
