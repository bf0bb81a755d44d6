"""The rules that judge one cycle: pure, so every rule has a unit test.

Writes are numbered ``1, 2, ...`` across the whole campaign; write ``i`` is one synced batch and
sets the head to ``i``. A cycle is boot ``k`` (which recovered head ``start``, then wrote until
the cut) judged by boot ``k+1``, which recovered head ``m``:

* the guest's own check must have passed (it prints ``SELFTEST: powercut recover ok`` only if
  the log holds exactly the window below ``m``, each value exact); a FAIL line, a traceback,
  a panic, a missing recovery marker or a timeout is ``FAIL``;
* ``m >= acked`` (the highest write whose sync returned before the cut): otherwise ``LOSS``;
* ``m >= start``: what the previous boot recovered was on the disk before boot ``k`` wrote
  anything, so losing it is a ``LOSS`` too;
* ``m <= issued`` (the highest write boot ``k`` started; ``start`` if it started none): anything
  beyond is a write nobody made, ``INVENTED``.

A write issued but not acknowledged may or may not be there: both are correct.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(enum.Enum):
    PASS = "pass"
    LOSS = "LOSS"
    INVENTED = "INVENTED"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS


def judge(
    *,
    start: int,
    acked: int | None,
    issued: int | None,
    recovered: int | None,
    guest_failure: str = "",
) -> Judgement:
    """Apply the module's rules, the guest's failure first."""
    if guest_failure:
        return Judgement(Verdict.FAIL, guest_failure)
    if recovered is None:
        return Judgement(Verdict.FAIL, "no recovery marker")
    if acked is not None and recovered < acked:
        return Judgement(
            Verdict.LOSS,
            f"acknowledged write {acked} is missing: recovered head {recovered}",
        )
    if recovered < start:
        return Judgement(
            Verdict.LOSS,
            f"recovered head {recovered} is below {start}, which the boot started from",
        )
    ceiling = start if issued is None else max(start, issued)
    if recovered > ceiling:
        return Judgement(
            Verdict.INVENTED,
            f"recovered head {recovered} is beyond the last issued write {ceiling}",
        )
    return Judgement(Verdict.PASS, "")
