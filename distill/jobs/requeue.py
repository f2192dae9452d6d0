"""`distill retry`: failed jobs get a fresh attempts budget; truncated generations get a new job
with a bigger token budget (the same budget would truncate again)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from distill.errors import UserError
from distill.models import Generation, Job, JobStatus, Outcome, Run, utcnow


@dataclass(frozen=True)
class TruncatedRetry:
    run_id: int | None
    job_ids: list[int]
    skipped_budget: int  # truncated jobs whose budget was already >= the requested one


def requeue_failed(session: Session, *, run_id: int | None = None) -> list[int]:
    """Failed jobs back to queued with a fresh attempts budget. The caller publishes the ids."""
    query = select(Job.id).where(Job.status == JobStatus.failed)
    if run_id is not None:
        query = query.where(Job.run_id == run_id)
    ids = list(session.scalars(query.order_by(Job.id)))
    for start in range(0, len(ids), 500):
        session.execute(
            update(Job)
            .where(Job.id.in_(ids[start : start + 500]), Job.status == JobStatus.failed)
            .values(status=JobStatus.queued, attempts=0, finished_at=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return ids


def retry_truncated(
    session: Session, *, max_tokens: int, run_id: int | None = None
) -> TruncatedRetry:
    """One new job per truncated, not yet superseded generation, with budget max_tokens, in a
    new run. The new job keeps the sample's option order so it is the same sample, re-asked."""
    superseded = select(Job.supersedes_id).where(Job.supersedes_id.is_not(None))
    query = (
        select(Job)
        .join(Generation, Generation.job_id == Job.id)
        .where(Generation.outcome == Outcome.truncated, Job.id.not_in(superseded))
        .order_by(Job.id)
    )
    if run_id is not None:
        query = query.where(Job.run_id == run_id)
    truncated = list(session.scalars(query))
    if not truncated:
        return TruncatedRetry(run_id=None, job_ids=[], skipped_budget=0)
    eligible = [job for job in truncated if job.max_tokens < max_tokens]
    skipped = len(truncated) - len(eligible)
    if not eligible:
        top = max(job.max_tokens for job in truncated)
        raise UserError(
            f"{len(truncated)} truncated generation(s) already had a budget of up to {top} "
            f"tokens; pass --max-tokens larger than {top}"
        )
    source = session.get(Run, eligible[0].run_id)
    assert source is not None
    run = Run(
        kind="retry-truncated",
        teacher_model=source.teacher_model,
        prompt_version=source.prompt_version,
        params={**source.params, "max_tokens": max_tokens},
        samples_per_question=source.samples_per_question,
        requested_n=len(eligible),
        seed=source.seed,
    )
    session.add(run)
    session.flush()
    rows = [
        {
            "run_id": run.id,
            "question_id": job.question_id,
            "teacher_model": job.teacher_model,
            "prompt_version": job.prompt_version,
            "sample_index": job.sample_index,
            "max_tokens": max_tokens,
            "choice_order": job.choice_order,
            "supersedes_id": job.id,
        }
        for job in eligible
    ]
    session.execute(insert(Job), rows)
    ids = list(session.scalars(select(Job.id).where(Job.run_id == run.id).order_by(Job.id)))
    return TruncatedRetry(run_id=run.id, job_ids=ids, skipped_budget=skipped)
