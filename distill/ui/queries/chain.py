"""One chain in full: the question as presented, the whole exchange, the job's attempts and
errors; and the other samples of the same question, for reading side by side."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from distill.choices import LETTERS, gold_letter
from distill.models import Generation, Job, JobStatus, Outcome, Question

MAX_SIBLINGS = 12


@dataclass(frozen=True, slots=True)
class Option:
    letter: str
    text: str
    original_index: int
    gold: bool
    predicted: bool


@dataclass(frozen=True, slots=True)
class Sample:
    """One job of a question, with its generation if it has one."""

    job_id: int
    run_id: int
    sample_index: int
    status: JobStatus
    attempts: int
    lost_leases: int
    last_error: str | None
    max_tokens: int
    supersedes_id: int | None
    started_at: datetime | None
    finished_at: datetime | None
    gold: str
    generation_id: int | None = None
    outcome: Outcome | None = None
    finish_reason: str | None = None
    predicted: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    reasoning: str | None = None
    answer_text: str | None = None


@dataclass(frozen=True, slots=True)
class ChainView:
    sample: Sample
    question_id: int
    question_uid: str
    subject: str
    source: str
    question: str
    options: list[Option]
    teacher_model: str
    prompt_version: str
    response_shape: str
    raw_text: str
    raw_reasoning: str | None
    request_params: dict[str, Any]
    messages: list[dict[str, Any]]
    notes: list[Any]


def _sample(job: Job, generation: Generation | None, question: Question) -> Sample:
    gold = _gold(job.choice_order, question.answer_index)
    sample = Sample(
        job_id=job.id,
        run_id=job.run_id,
        sample_index=job.sample_index,
        status=job.status,
        attempts=job.attempts,
        lost_leases=job.lost_leases,
        last_error=job.last_error,
        max_tokens=job.max_tokens,
        supersedes_id=job.supersedes_id,
        started_at=job.started_at,
        finished_at=job.finished_at,
        gold=gold,
    )
    if generation is None:
        return sample
    return replace(
        sample,
        generation_id=generation.id,
        outcome=generation.outcome,
        finish_reason=generation.finish_reason,
        predicted=generation.predicted_letter,
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=generation.completion_tokens,
        latency_s=generation.latency_s,
        reasoning=generation.reasoning,
        answer_text=generation.answer_text,
    )


def _gold(order: list[int], answer_index: int) -> str:
    try:
        return gold_letter(tuple(order), answer_index)
    except ValueError:  # an order that does not fit the question (export drops those)
        return "?"


def get_chain(session: Session, *, generation_id: int) -> ChainView | None:
    found = session.execute(
        select(Generation, Job, Question)
        .join(Job, Job.id == Generation.job_id)
        .join(Question, Question.id == Job.question_id)
        .where(Generation.id == generation_id)
    ).first()
    if found is None:
        return None
    generation, job, question = found
    sample = _sample(job, generation, question)
    choices = [str(c) for c in question.choices]
    options = [
        Option(
            letter=LETTERS[i],
            text=choices[original] if 0 <= original < len(choices) else "?",
            original_index=original,
            gold=LETTERS[i] == sample.gold,
            predicted=LETTERS[i] == sample.predicted,
        )
        for i, original in enumerate(job.choice_order)
    ]
    request = generation.request or {}
    return ChainView(
        sample=sample,
        question_id=question.id,
        question_uid=question.uid,
        subject=question.subject,
        source=question.source,
        question=question.question,
        options=options,
        teacher_model=generation.teacher_model,
        prompt_version=job.prompt_version,
        response_shape=generation.response_shape,
        raw_text=generation.raw_text,
        raw_reasoning=generation.raw_reasoning,
        request_params=dict(request.get("params") or {}),
        messages=list(request.get("messages") or []),
        notes=list(generation.notes or []),
    )


def siblings(
    session: Session, *, question_id: int, exclude_job: int, limit: int = MAX_SIBLINGS
) -> list[Sample]:
    """The question's other jobs (every run, every attempt at a budget), oldest first."""
    rows = session.execute(
        select(Job, Generation, Question)
        .join(Question, Question.id == Job.question_id)
        .outerjoin(Generation, Generation.job_id == Job.id)
        .where(Job.question_id == question_id, Job.id != exclude_job)
        .order_by(Job.id)
        .limit(limit)
    ).all()
    return [_sample(job, generation, question) for job, generation, question in rows]
