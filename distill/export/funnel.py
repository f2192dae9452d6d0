"""The funnel: each filter of an export, what it removed and what remained, in order. The labels
are the rows of the dataset card's "how the rows were chosen" tables."""

from __future__ import annotations

from distill.export.records import ChainDrop
from distill.models import Outcome
from schemas.export import FunnelStep

GENERATIONS = "finished generations in the selection"
SUPERSEDED = "superseded by a retry with a larger token budget"
BAD_ORDER = "option order does not fit the question"
NOT_A_RESULT = "not a result: the server ended the generation (finish_reason not stop/length)"
MOVED_REFERENCE = (
    "an option that refers to other options was moved (asked before references were detected)"
)
QUESTIONS = "questions with finished generations"
NEAR_DUPLICATE = "near-duplicate question (kept once, lowest id)"
CONTAMINATED = "question found in an eval set (--decontaminate)"
OUTCOME_LABELS = {
    Outcome.incorrect: "teacher answered incorrectly",
    Outcome.truncated: "truncated (token budget hit or chain never closed)",
    Outcome.unparseable: "no answer letter after the chain",
    Outcome.empty: "empty response",
}
NOT_STOPPED = "finish_reason is not stop"
NOT_CLOSED = "think block not closed"
LETTER_MISMATCH = "predicted letter differs from the gold letter"
CHAIN_LABELS = {
    ChainDrop.empty: "empty chain after cleaning",
    ChainDrop.answer_line_inside: "answer line in the middle of the chain",
    ChainDrop.conflicting_answer: "chain ends with a different answer",
}
NO_TOKEN_COUNT = "no token count (for --max-reasoning-tokens)"
TOO_LONG = "longer than --max-reasoning-tokens"
NOT_BEST = "not the shortest correct chain of its question (--per-question best)"
BALANCE_SUBSAMPLED = "subsampled for gold-letter balance (--balance)"
FIX_STRAY = "chains with stray think markers removed"
FIX_TRAILING = "chains with a trailing answer or \\boxed line removed"


class Funnel:
    def __init__(self, label: str, count: int) -> None:
        self.steps = [FunnelStep(step=label, removed=0, remaining=count)]

    @property
    def remaining(self) -> int:
        return self.steps[-1].remaining

    def remove(self, label: str, removed: int) -> None:
        self.steps.append(
            FunnelStep(step=label, removed=removed, remaining=self.remaining - removed)
        )

    def copy(self) -> Funnel:
        twin = Funnel(self.steps[0].step, self.steps[0].remaining)
        twin.steps = list(self.steps)
        return twin
