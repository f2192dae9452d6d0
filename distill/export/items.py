"""The unit an export plans with: one future record, before its text is read and built."""

from __future__ import annotations

from dataclasses import dataclass

from distill.choices import gold_letter
from distill.export.select import QuestionRow
from schemas.export import Split


@dataclass(frozen=True, slots=True)
class Difficulty:
    """1 - pass rate over a question's finished samples, and the tie-break: how long its correct
    chains are (mean completion tokens; over all samples when none was correct)."""

    value: float
    length: float
    samples: int
    correct: int


@dataclass(slots=True)
class PlannedRecord:
    record_id: str
    question: QuestionRow
    split: Split
    order: tuple[int, ...]  # presented option i is the question's choice order[i]
    difficulty: Difficulty
    generation_id: int | None = None  # reasoning records: the chain's generation
    chain_tokens: int | None = None  # what --max-reasoning-tokens and "best" compare
    chain_chars: int = 0
    reasoning_tokens: int | None = None
    completion_tokens: int | None = None
    curriculum_rank: int | None = None
    stage: int | None = None

    @property
    def letter(self) -> str:
        return gold_letter(self.order, self.question.answer_index)

    @property
    def n_options(self) -> int:
        return len(self.order)
