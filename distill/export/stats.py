"""Figures about the written records, gathered while they stream past: the dataset card, the
plots and the manifest are built from these."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from distill.export.balance import letter_counts
from schemas.export import HistogramBin, LengthStats, Split, SplitStats

HISTOGRAM_BINS = 10


@dataclass(slots=True)
class SplitTally:
    records: int = 0
    questions: set[str] = field(default_factory=set)
    letters: Counter[str] = field(default_factory=Counter)
    subjects: Counter[str] = field(default_factory=Counter)
    difficulty: list[float] = field(default_factory=list)


@dataclass(slots=True)
class RecordStats:
    splits: dict[Split, SplitTally] = field(
        default_factory=lambda: {split: SplitTally() for split in Split}
    )
    lengths: list[int] = field(default_factory=list)  # chain tokens of every record
    length_unit: str = ""

    def add(self, split: Split, *, uid: str, letter: str, subject: str, difficulty: float) -> None:
        tally = self.splits[split]
        tally.records += 1
        tally.questions.add(uid)
        tally.letters[letter] += 1
        tally.subjects[subject] += 1
        tally.difficulty.append(difficulty)

    def split_stats(self) -> dict[str, SplitStats]:
        return {
            str(split): SplitStats(
                records=t.records,
                questions=len(t.questions),
                letters=letter_counts(t.letters.elements()),
                subjects={s: t.subjects[s] for s in sorted(t.subjects)},
            )
            for split, t in self.splits.items()
        }

    def histogram(self) -> list[HistogramBin]:
        bins = []
        for i in range(HISTOGRAM_BINS):
            low, high = i / HISTOGRAM_BINS, (i + 1) / HISTOGRAM_BINS
            bins.append(
                HistogramBin(
                    low=low,
                    high=high,
                    train=_in_bin(self.splits[Split.train].difficulty, i),
                    validation=_in_bin(self.splits[Split.validation].difficulty, i),
                )
            )
        return bins

    def length_stats(self) -> LengthStats | None:
        if not self.lengths:
            return None
        ordered = sorted(self.lengths)
        return LengthStats(
            unit=self.length_unit,
            count=len(ordered),
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            mean=round(sum(ordered) / len(ordered), 1),
            max=ordered[-1],
        )


def _in_bin(values: Sequence[float], i: int) -> int:
    # The last bin is closed: difficulty 1.0 (never solved) belongs to [0.9, 1.0].
    def index(v: float) -> int:
        return min(int(v * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)

    return sum(1 for v in values if index(v) == i)


def percentile(ordered: Sequence[int], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on sorted values."""
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 1)
