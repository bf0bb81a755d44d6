"""A picture of a run (``python -m harness markers RUN --plot FILE.png``).

One horizontal lane per boot, time since QEMU's launch on the x axis: each marker a dot at its
arrival (required filled, optional hollow), the failure line a red cross, the missing required
markers named in red at the lane's end, and the contract's phases shaded behind the dots
(each phase spans its markers' arrivals; the phase that failed first is hatched red). It
answers at a glance what the timeline table answers line by line: how far each boot got, where
the time went, what is missing.

matplotlib is an optional dependency (the ``plot`` and ``bench`` extras); without it the
command fails with a message saying how to install it, and nothing else needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.contract.history import ReplayedBoot
from harness.contract.matcher import Outcome
from harness.contract.phases import boot_phases, first_failed_phase
from harness.errors import DependencyMissing

INSTALL_HINT = "pip install -e '.[plot]' (matplotlib)"
_PHASE_COLOURS = ("#dbe9f6", "#fbe3c9", "#dff0d8", "#eadcf2", "#f6f3c4", "#d9f1f1")
_LEVELS = 6  # label rows above a lane's dots
_ROW = 0.072  # their spacing, in lanes (a lane is 1.0)
_CHAR_FRACTION = 0.0050  # one 7 pt character, as a fraction of the time axis (13 in wide)
_OUTCOME_COLOURS = {
    Outcome.PASSED: "#2e7d32",
    Outcome.FAILED: "#c62828",
    Outcome.TIMEOUT: "#ef6c00",
    Outcome.INCOMPLETE: "#ef6c00",
    Outcome.RUNNING: "#555555",
}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise DependencyMissing(
            f"--plot needs matplotlib, which is not installed: {INSTALL_HINT}"
        ) from exc
    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    return plt


def _end_time(boot: ReplayedBoot) -> float:
    times = [at for at, _ in boot.matcher.lines if at is not None]
    return max(times, default=1.0)


def _shade_phases(ax: Any, boot: ReplayedBoot, y: float, colours: dict[str, str]) -> None:
    m = boot.matcher
    failed = first_failed_phase(m.contract, m.arrivals, m.failure)
    start = 0.0
    for phase, members in boot_phases(m.contract.phases, m.contract):
        arrived = (m.arrivals[x.id].at for x in members if x.id in m.arrivals)
        times = [t for t in arrived if t is not None]
        is_failed = failed is not None and failed.name == phase.name
        if is_failed and m.failure is not None and m.failure.at is not None:
            times.append(m.failure.at)  # the failed phase runs up to the failure line
        # A phase's band is the time it was the first incomplete one: from the previous
        # band's end to its own last arrival (nothing if it was complete already).
        end = max(times, default=start)
        if is_failed:
            end = max(end, start + 0.05)
        if end <= start:
            continue
        ax.add_patch(
            _rectangle(
                (start, y - 0.42),
                end - start,
                0.84,
                facecolor=colours[phase.name],
                edgecolor="#c62828" if is_failed else "none",
                hatch="//" if is_failed else None,
                linewidth=1.2 if is_failed else 0,
                zorder=0,
            )
        )
        ax.text(
            (start + end) / 2, y - 0.38, phase.name, ha="center", va="bottom", fontsize=7,
            color="#c62828" if is_failed else "#555555", zorder=1,
        )  # fmt: skip
        start = end


def _rectangle(*args: Any, **kwargs: Any) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(*args, **kwargs)


def _lane(ax: Any, boot: ReplayedBoot, y: float, colours: dict[str, str], span: float) -> None:
    m = boot.matcher
    _shade_phases(ax, boot, y, colours)
    arrived = sorted(m.arrivals.values(), key=lambda a: (a.at or 0.0, a.line_no))
    required = {marker.id: marker.required for marker in m.contract.markers}
    # Each label goes on the lowest free row: one whose previous label (its width estimated
    # from its length) ends before this marker's time; a thin leader ties it to its dot.
    char = span * _CHAR_FRACTION
    row_ends = [float("-inf")] * _LEVELS
    for arrival in arrived:
        if arrival.at is None:
            continue
        free = [i for i, end in enumerate(row_ends) if end <= arrival.at]
        row = free[0] if free else min(range(_LEVELS), key=lambda i: row_ends[i])
        row_ends[row] = arrival.at + char * (len(arrival.marker_id) + 1)
        filled = required.get(arrival.marker_id, False)
        ax.plot(
            arrival.at, y, "o", markersize=7 if filled else 6, zorder=3,
            markerfacecolor="#2e7d32" if filled else "white", markeredgecolor="#2e7d32",
        )  # fmt: skip
        height = 0.1 + _ROW * row
        ax.plot([arrival.at, arrival.at], [y + 0.04, height + y], color="#9e9e9e", lw=0.5)
        ax.text(
            arrival.at, y + height, arrival.marker_id, fontsize=7, ha="left", va="bottom",
            zorder=4,
        )  # fmt: skip
    end = _end_time(boot)
    if m.failure is not None and m.failure.at is not None:
        ax.plot(m.failure.at, y, "X", color="#c62828", markersize=11, zorder=5)
        ax.text(
            m.failure.at, y - 0.2, f"FAIL {m.failure.pattern_id}", color="#c62828",
            fontsize=8, ha="right", va="top", zorder=5,
        )  # fmt: skip
    ax.plot([end, end], [y - 0.3, y + 0.3], color="#333333", linewidth=1.5, zorder=2)
    missing = [marker.id for marker in m.missing]
    if missing:
        ax.text(
            end + 0.1, y, "missing: " + ", ".join(missing), color="#c62828", fontsize=7,
            ha="left", va="center", wrap=True, zorder=5,
        )  # fmt: skip


def plot_run(
    boots: Sequence[ReplayedBoot], path: Path, *, title: str = "", not_run: Sequence[int] = ()
) -> Path:
    """Draw ``boots`` (replayed, in order) into the PNG ``path``, and an empty lane for each
    boot of ``not_run``; returns ``path``."""
    plt = _pyplot()
    phases = boots[0].matcher.contract.phases if boots else ()
    colours = {p.name: _PHASE_COLOURS[i % len(_PHASE_COLOURS)] for i, p in enumerate(phases)}
    lanes = len(boots) + len(not_run)
    fig, ax = plt.subplots(figsize=(13, 1.4 + 2.0 * max(lanes, 1)))
    longest = max((_end_time(b) for b in boots), default=1.0)
    labels = []
    for index, boot in enumerate(boots):
        y = lanes - 1 - index  # boot 1 on top
        _lane(ax, boot, y, colours, longest * 1.3 + 0.5)
        outcome = boot.matcher.outcome
        labels.append((y, f"boot {boot.number}\n{outcome.value.upper()}", outcome))
    for index, number in enumerate(not_run):
        y = lanes - 1 - len(boots) - index
        ax.text(0.1, y, "not run (an earlier boot did not pass)", fontsize=8, va="center")
        labels.append((y, f"boot {number}\nNOT RUN", Outcome.RUNNING))
    ax.set_xlim(0, longest * 1.3 + 0.5)  # room for the "missing:" text
    ax.set_ylim(-0.6, lanes - 0.4 + 0.45)
    ax.set_yticks([y for y, _, _ in labels], [text for _, text, _ in labels])
    for tick, (_, _, outcome) in zip(ax.get_yticklabels(), labels, strict=True):
        tick.set_color(_OUTCOME_COLOURS.get(outcome, "#333333"))
        tick.set_fontweight("bold")
    ax.set_xlabel("seconds since QEMU launch")
    ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title(title or "marker arrivals", fontsize=10, loc="left")
    handles = [
        ax.plot([], [], "o", color="#2e7d32", label="required marker")[0],
        ax.plot([], [], "o", markerfacecolor="white", color="#2e7d32", label="optional")[0],
        ax.plot([], [], "X", color="#c62828", label="failure line")[0],
        ax.plot([], [], "|", color="#333333", markersize=12, label="last console line")[0],
    ]
    ax.legend(
        handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=4, fontsize=7,
        frameon=False,
    )  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
