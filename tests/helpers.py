"""Small builders shared by the job-queue tests."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, insert

from distill.db import session_scope
from distill.importers import question_row
from distill.jobs.enqueue import EnqueuePlan, create_run
from distill.models import Outcome, Question
from distill.prompts import LETTERS
from schemas.mcq import MCQRecord


def add_questions(
    engine: Engine,
    n: int,
    *,
    subjects: Sequence[str] = ("math", "history", "biology"),
    options: int = 4,
) -> None:
    rows = []
    for i in range(n):
        record = MCQRecord(
            question=f"Question number {i}: which option is right?",
            choices=[f"option {LETTERS[j]} of {i}" for j in range(options)],
            answer_index=i % options,
            subject=subjects[i % len(subjects)],
            source="test",
        )
        rows.append(question_row(record))
    with session_scope(engine) as session:
        for start in range(0, len(rows), 1000):
            session.execute(insert(Question), rows[start : start + 1000])


def enqueue(
    engine: Engine, n: int, *, samples: int = 1, max_tokens: int = 256, seed: int = 0
) -> EnqueuePlan:
    with session_scope(engine) as session:
        return create_run(
            session,
            n=n,
            samples=samples,
            teacher_model="test-teacher",
            params={"temperature": 0.6, "top_p": 0.95},
            max_tokens=max_tokens,
            seed=seed,
        )


def generation(outcome: Outcome = Outcome.correct) -> dict[str, object]:
    """Column values of a stored generation with the given outcome, for finishing a job."""
    truncated = outcome == Outcome.truncated
    return {
        "teacher_model": "test-teacher",
        "request": {"messages": [], "params": {}},
        "raw_text": "x" if truncated else "x</think>The answer is A.",
        "raw_reasoning": None,
        "response_shape": "no_marker" if truncated else "open_tag_omitted",
        "reasoning": "x",
        "answer_text": None if truncated else "The answer is A.",
        "predicted_letter": None if truncated else "A",
        "predicted_index": None if truncated else 0,
        "finish_reason": "length" if truncated else "stop",
        "outcome": outcome,
        "prompt_tokens": 10,
        "completion_tokens": 100,
        "latency_s": 0.1,
    }
