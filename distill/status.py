"""Progress of the job queue: counts, accuracy so far, recent throughput, ETA."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from distill.models import Generation, Job, JobStatus, Outcome, utcnow
from schemas.status import StatusReport


def collect(
    session: Session, *, run_id: int | None = None, window_s: float = 300.0
) -> StatusReport:
    now = utcnow()
    job_filter = [Job.run_id == run_id] if run_id is not None else []

    jobs = dict.fromkeys((s.value for s in JobStatus), 0)
    for status, count in session.execute(
        select(Job.status, func.count()).where(*job_filter).group_by(Job.status)
    ):
        jobs[status.value] = count

    outcomes = dict.fromkeys((o.value for o in Outcome), 0)
    for outcome, count in session.execute(
        select(Generation.outcome, func.count())
        .join(Job, Job.id == Generation.job_id)
        .where(*job_filter)
        .group_by(Generation.outcome)
    ):
        outcomes[outcome.value] = count
    graded = sum(outcomes.values())

    since = now - timedelta(seconds=window_s)
    count, tokens, first_start = session.execute(
        select(
            func.count(Job.id),
            func.coalesce(func.sum(Generation.completion_tokens), 0),
            func.min(Job.started_at),
        )
        .join(Generation, Generation.job_id == Job.id)
        .where(Job.finished_at >= since, *job_filter)
    ).one()
    # Rates over the part of the window the work actually spans, so a run that started a
    # minute ago is not averaged over five.
    span = window_s
    if first_start is not None:
        span = min(window_s, max((now - first_start).total_seconds(), 1.0))
    jobs_per_min = 60.0 * count / span if count else 0.0
    remaining = jobs["queued"] + jobs["running"]
    return StatusReport(
        run_id=run_id,
        jobs=jobs,
        outcomes=outcomes,
        total=sum(jobs.values()),
        accuracy=outcomes["correct"] / graded if graded else None,
        window_s=window_s,
        completion_tokens_per_s=float(tokens or 0) / span if count else 0.0,
        jobs_per_min=jobs_per_min,
        eta_s=_eta(remaining, jobs_per_min),
    )


def _eta(remaining: int, jobs_per_min: float) -> float | None:
    if not remaining:
        return 0.0
    return 60.0 * remaining / jobs_per_min if jobs_per_min else None
