"""Rows for tests, the one set of factories.

Inserted directly, in any state a real run can leave them in (and a few it should not), without
going through enqueue or a worker:

    with session_scope(engine) as s:
        q = add_question(s, subject="math")
        run = add_run(s, samples_per_question=2)
        add_sample(s, question=q, run=run, outcome=Outcome.correct, reasoning="...")

Or through the real code, for job-queue tests: `add_questions(engine, n)` then
`enqueue(engine, n)`, and `generation(outcome)` for the values a worker would store."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from distill.choices import LETTERS, gold_letter, original_index
from distill.db import session_scope
from distill.importers import question_row
from distill.jobs.enqueue import EnqueuePlan, create_run
from distill.models import Generation, Job, JobStatus, Outcome, Question, Run, utcnow
from distill.prompts import PROMPT_VERSION, build_messages
from schemas.mcq import MCQRecord

TEACHER = "test-teacher"
_counter = itertools.count()


def add_question(
    session: Session,
    *,
    question: str | None = None,
    choices: Sequence[str] | None = None,
    answer_index: int = 0,
    subject: str = "math",
    source: str = "test",
) -> Question:
    n = next(_counter)
    record = MCQRecord(
        question=question or f"Question {n}: which option is right?",
        choices=list(choices or [f"option {LETTERS[i]} of {n}" for i in range(4)]),
        answer_index=answer_index,
        subject=subject,
        source=source,
    )
    row = Question(**question_row(record))
    session.add(row)
    session.flush()
    return row


def add_run(
    session: Session,
    *,
    teacher_model: str = TEACHER,
    prompt_version: str = PROMPT_VERSION,
    params: dict[str, Any] | None = None,
    samples_per_question: int = 1,
    kind: str = "enqueue",
    seed: int = 0,
) -> Run:
    run = Run(
        kind=kind,
        teacher_model=teacher_model,
        prompt_version=prompt_version,
        params=params or {"temperature": 0.6, "top_p": 0.95, "max_tokens": 1024},
        samples_per_question=samples_per_question,
        requested_n=0,
        seed=seed,
    )
    session.add(run)
    session.flush()
    return run


def add_job(
    session: Session,
    *,
    question: Question,
    run: Run,
    sample_index: int = 0,
    choice_order: Sequence[int] | None = None,
    status: JobStatus = JobStatus.done,
    max_tokens: int = 1024,
    supersedes: Job | None = None,
) -> Job:
    order = list(choice_order if choice_order is not None else range(len(question.choices)))
    job = Job(
        run_id=run.id,
        question_id=question.id,
        teacher_model=run.teacher_model,
        prompt_version=run.prompt_version,
        sample_index=sample_index,
        max_tokens=max_tokens,
        choice_order=order,
        supersedes_id=supersedes.id if supersedes is not None else None,
        status=status,
        finished_at=utcnow() if status in (JobStatus.done, JobStatus.failed) else None,
    )
    session.add(job)
    session.flush()
    return job


def add_generation(
    session: Session,
    *,
    job: Job,
    question: Question,
    outcome: Outcome = Outcome.correct,
    reasoning: str | None = "Let me think step by step about the options.",
    answer_text: str | None = None,
    finish_reason: str | None = None,
    predicted_letter: str | None = None,
    completion_tokens: int | None = None,
    response_shape: str = "open_tag_omitted",
) -> Generation:
    """A generation consistent with its outcome unless told otherwise: a correct one predicts
    the gold letter, an incorrect one another letter, a truncated one has no answer text."""
    gold = gold_letter(job.choice_order, question.answer_index)
    if predicted_letter is None and outcome in (Outcome.correct, Outcome.incorrect):
        wrong = next(x for x in LETTERS[: len(job.choice_order)] if x != gold)
        predicted_letter = gold if outcome is Outcome.correct else wrong
    if finish_reason is None:
        finish_reason = "length" if outcome is Outcome.truncated else "stop"
    if answer_text is None and outcome is not Outcome.truncated:
        answer_text = f"\\boxed{{{predicted_letter}}}" if predicted_letter else "I am not sure."
    if outcome is Outcome.truncated:
        response_shape = "no_marker" if answer_text is None else response_shape
    raw = (reasoning or "") + ("</think>" + answer_text if answer_text is not None else "")
    predicted_index = (
        original_index(predicted_letter, job.choice_order) if predicted_letter is not None else None
    )
    generation = Generation(
        job_id=job.id,
        teacher_model=job.teacher_model,
        request={"messages": build_messages(question.question, question.choices)},
        raw_text=raw,
        raw_reasoning=None,
        response_shape=response_shape,
        reasoning=reasoning,
        answer_text=answer_text,
        predicted_letter=predicted_letter,
        predicted_index=predicted_index,
        finish_reason=finish_reason,
        outcome=outcome,
        prompt_tokens=100,
        completion_tokens=(
            completion_tokens if completion_tokens is not None else len(raw.split()) + 5
        ),
        latency_s=0.5,
    )
    session.add(generation)
    session.flush()
    return generation


def add_sample(
    session: Session,
    *,
    question: Question,
    run: Run,
    sample_index: int = 0,
    choice_order: Sequence[int] | None = None,
    max_tokens: int = 1024,
    supersedes: Job | None = None,
    **generation: Any,
) -> tuple[Job, Generation]:
    """A finished job and its generation (keyword arguments go to add_generation)."""
    job = add_job(
        session,
        question=question,
        run=run,
        sample_index=sample_index,
        choice_order=choice_order,
        max_tokens=max_tokens,
        supersedes=supersedes,
    )
    return job, add_generation(session, job=job, question=question, **generation)


def rotated(n_options: int, shift: int) -> list[int]:
    """An option order that presents original option (i + shift) % n at position i."""
    return [(i + shift) % n_options for i in range(n_options)]


# --- through enqueue, for the job-queue tests --------------------------------------------------


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
