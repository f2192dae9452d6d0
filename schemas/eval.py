"""`distill eval --json`: one eval run's report, and the paired comparison of two."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

EvalMode = Literal["reasoning", "direct"]


class Interval(BaseModel):
    """k of n, the share, and its 95 % Wilson interval."""

    k: int
    n: int
    value: float | None  # None when n == 0
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


class Percentiles(BaseModel):
    p50: float | None
    p95: float | None
    max: float | None


class EvalReport(BaseModel):
    eval_id: int
    name: str | None
    model: str
    url: str
    data: str
    split: str
    mode: EvalMode
    questions: int  # in the split (after --limit)
    answered: int  # replies stored so far; < questions while the run is unfinished
    finished: bool
    refused: int  # requests the server refused (a 400): counted as no answer
    # Correct: the letter read (after the close marker in reasoning mode) is the gold one and,
    # with a budget, the reply came within it.
    accuracy: Interval
    # Termination, apart from accuracy: the share that closed the think block (reasoning mode),
    # that ended on the model's own end-of-turn (finish_reason "stop"), that was cut at
    # max_tokens (finish_reason "length"), and that did both: closed, then stopped.
    closed: Interval | None
    stopped: Interval
    cut: Interval
    terminated: Interval
    no_answer: Interval  # no letter could be read: unclosed block, no letter after it, refused
    over_budget: Interval | None  # with --budget-seconds: replies slower than it (counted wrong)
    budget_seconds: float | None
    per_subject: dict[str, Interval]
    completion_tokens: Percentiles
    latency_s: Percentiles
    warnings: list[str]


class SubjectDelta(BaseModel):
    subject: str
    n: int
    a: float
    b: float
    delta: float  # b - a


class PairedTest(BaseModel):
    """One metric of two runs on the same questions: the shares, and the exact McNemar test."""

    a: Interval
    b: Interval
    delta: float  # b - a
    only_a: int  # questions where only A has it
    only_b: int
    p_value: float


class CompareReport(BaseModel):
    a: int  # eval run ids
    b: int
    a_label: str
    b_label: str
    common: int  # questions both runs answered
    accuracy: PairedTest
    terminated: PairedTest
    per_subject: list[SubjectDelta]
    warnings: list[str]
