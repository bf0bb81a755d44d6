"""PNGs of the host results (matplotlib is an optional ``bench`` dependency).

Drawn from the result document, with the non-interactive Agg backend, so a run over SSH or in
CI never needs a display. Without matplotlib the benchmark still prints and writes its JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.results import stamp
from bench.store_report import LABELS, paired_ratio


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_store(doc: dict[str, Any], directory: Path) -> list[Path]:
    """``store-replay-<date>.png`` and ``store-throughput-<date>.png``; [] without matplotlib."""
    try:
        plt = _pyplot()
    except ImportError:
        return []
    return [_replay(plt, doc, directory), _throughput(plt, doc, directory)]


def _replay(plt: Any, doc: dict[str, Any], directory: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for series, points in doc["replay_curve"].items():
        records = [p["records"] for p in points]
        left.loglog(records, [p["warm"]["median"] for p in points], "o-", label=series)
        right.loglog(records, [p["peak_bytes"] / (1 << 20) for p in points], "o-", label=series)
    left.set(
        xlabel="journal records (commit groups)",
        ylabel="replay (open + first get), s",
        title="Replay time grows with the journal",
    )
    right.set(
        xlabel="journal records (commit groups)",
        ylabel="peak memory, MiB",
        title="Memory follows live keys (fixed: 1,000)",
    )
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    fig.tight_layout()
    path = directory / f"store-replay-{stamp()}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _throughput(plt: Any, doc: dict[str, Any], directory: Path) -> Path:
    tp = doc["throughput"]
    physical = tp["physical"]["4096"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    sections = (
        ("durable", "durable puts/s (put + sync each)"),
        ("batched", "batched puts/s (10,000, one sync)"),
        ("gets", "gets/s"),
    )
    for axis, (section, title) in zip(axes, sections, strict=True):
        figures = list(tp[section].items())
        if section == "durable":
            figures.insert(0, ("physical", physical))
        values = [figure["median"] for _, figure in figures]
        labels = [
            "pwrite 4 KiB\n+ fdatasync"
            if name == "physical"
            else LABELS.get(name, name).replace(", ", "\n").replace(" WAL", "\nWAL")
            for name, _ in figures
        ]
        bars = axis.bar(range(len(values)), values, color="#4c72b0")
        if section == "durable":
            bars[0].set_color("#999999")
        axis.set_xticks(range(len(values)), labels, fontsize=6.5)
        axis.set_title(title, fontsize=10)
        axis.grid(True, axis="y", alpha=0.3)
        for index, (_, figure) in enumerate(figures):
            text = (
                f"{paired_ratio(figure, physical):.2f}x phys"
                if section == "durable"
                else f"{figure['median']:,.0f}"
            )
            axis.annotate(text, (index, values[index]), ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    path = directory / f"store-throughput-{stamp()}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
