"""PNG plots for the dataset card: difficulty, chain length, gold letters. Drawn with
matplotlib's object API on an Agg canvas, never pyplot: no global backend or figure state is
touched, so exporting from a notebook or a test leaves matplotlib as it was. Bars are drawn from
counts computed here (not `hist` over 100,000 values), which keeps plotting well under a second."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from distill.export.stats import RecordStats
from schemas.export import Split

DIFFICULTY = "difficulty.png"
LENGTHS = "lengths.png"
LETTERS_PNG = "letters.png"
LENGTH_BINS = 50
_COLORS = {Split.train: "#4C72B0", Split.validation: "#DD8452"}
_WIDTH = 0.4


def _figure() -> tuple[Figure, Any]:
    fig = Figure(figsize=(6.4, 3.6))
    fig.subplots_adjust(left=0.11, right=0.97, top=0.95, bottom=0.15)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    # No "Software" entry: the bytes must not change with matplotlib's version string alone.
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})


def _difficulty(stats: RecordStats, path: Path) -> None:
    fig, ax = _figure()
    bins = stats.histogram()
    centres = [(b.low + b.high) / 2 for b in bins]
    for offset, split in enumerate(Split):
        counts = [b.train if split is Split.train else b.validation for b in bins]
        if any(counts):
            xs = [c + (offset - 0.5) * _WIDTH * 0.1 for c in centres]
            ax.bar(
                xs,
                counts,
                width=_WIDTH * 0.1,
                color=_COLORS[split],
                label=f"{split} ({stats.splits[split].records})",
            )
    ax.set_xlabel("difficulty (1 - teacher pass rate)")
    ax.set_ylabel("records")
    ax.set_xlim(0, 1)
    ax.legend()
    _save(fig, path)


def _length_counts(values: Sequence[int]) -> tuple[list[float], list[int]]:
    low, high = min(values), max(values)
    step = max((high - low) / LENGTH_BINS, 1e-9)
    counts = [0] * LENGTH_BINS
    for v in values:
        counts[min(int((v - low) / step), LENGTH_BINS - 1)] += 1
    return [low + i * step for i in range(LENGTH_BINS + 1)], counts


def _lengths(stats: RecordStats, path: Path) -> None:
    fig, ax = _figure()
    edges, counts = _length_counts(stats.lengths)
    ax.stairs(counts, edges, fill=True, color=_COLORS[Split.train])
    summary = stats.length_stats()
    if summary is not None:
        for q, value in (("p50", summary.p50), ("p90", summary.p90), ("p99", summary.p99)):
            ax.axvline(value, color="black", linestyle="--", linewidth=0.8)
            ax.annotate(
                q,
                (value, 1),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
            )
    ax.set_xlabel(stats.length_unit or "tokens")
    ax.set_ylabel("records")
    _save(fig, path)


def _letters(stats: RecordStats, path: Path) -> None:
    fig, ax = _figure()
    letters = sorted({letter for t in stats.splits.values() for letter in t.letters})
    for offset, split in enumerate(Split):
        tally = stats.splits[split]
        if not tally.records:
            continue
        shares = [100 * tally.letters[letter] / tally.records for letter in letters]
        xs = [i + (offset - 0.5) * _WIDTH for i in range(len(letters))]
        ax.bar(xs, shares, width=_WIDTH, label=str(split), color=_COLORS[split])
    ax.set_xticks(range(len(letters)), letters)
    ax.set_xlabel("gold letter")
    ax.set_ylabel("% of records")
    ax.legend()
    _save(fig, path)


def write_plots(stats: RecordStats, directory: Path) -> list[str]:
    """The plots written into `directory`, by file name."""
    written = [DIFFICULTY, LETTERS_PNG]
    _difficulty(stats, directory / DIFFICULTY)
    _letters(stats, directory / LETTERS_PNG)
    if stats.lengths:
        _lengths(stats, directory / LENGTHS)
        written.insert(1, LENGTHS)
    return written
