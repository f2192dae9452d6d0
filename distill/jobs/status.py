"""Progress of the job queue: counts, accuracy so far, throughput, ETA.

`distill status` and `distill enqueue --wait` both read this, so they show the same numbers.
While jobs are queued or running, rates are measured over the recent window (the last
`window_s` seconds, or since the work started if that is later), so they describe the present and
the ETA follows them. Once nothing is left, a run reports its own average (first start to last
finish) and the whole queue says "idle", instead of a rate that decays as the window empties."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, TextClause, and_, func, literal_column, select, text
from sqlalchemy.orm import Session

from distill.choices import OptionOrder
from distill.jobs import workers
from distill.models import Generation, Job, JobStatus, Outcome, Question, utcnow
from schemas.status import RateBasis, StatusReport, WorkerReport, WorkerStateName

WORKERS_WINDOW = timedelta(minutes=10)


def collect(
    session: Session,
    *,
    run_id: int | None = None,
    window_s: float = 300.0,
    heartbeat_s: float = 20.0,
) -> StatusReport:
    now = utcnow()
    job_filter = [Job.run_id == run_id] if run_id is not None else []

    jobs = dict.fromkeys((s.value for s in JobStatus), 0)
    for status, count in session.execute(
        select(Job.status, func.count()).where(*job_filter).group_by(Job.status)
    ):
        jobs[status.value] = count

    outcomes = dict.fromkeys((o.value for o in Outcome), 0)
    for outcome, count in session.execute(_outcome_counts(session, run_id)):
        outcomes[outcome.value] = count
    graded = sum(outcomes.values())
    remaining = jobs["queued"] + jobs["running"]

    basis: RateBasis
    if remaining:
        basis = "recent"
        since = now - timedelta(seconds=window_s)
        count, tokens, first, _ = _finished(session, [Job.finished_at >= since, *job_filter])
        # Over the part of the window the work actually spans: a run that started a minute ago
        # is not averaged over five.
        span = min(window_s, max((now - first).total_seconds(), 1.0)) if first else window_s
    elif run_id is not None and graded:
        basis = "run"
        count, tokens, first, last = _finished(session, job_filter)
        span = max((last - first).total_seconds(), 1.0) if first and last else 1.0
    else:
        basis, count, tokens, span = "idle", 0, 0, 1.0
    jobs_per_min = 60.0 * count / span if count else 0.0
    return StatusReport(
        run_id=run_id,
        jobs=jobs,
        outcomes=outcomes,
        total=sum(jobs.values()),
        accuracy=outcomes["correct"] / graded if graded else None,
        window_s=window_s,
        rate_basis=basis,
        completion_tokens_per_s=float(tokens) / span if count else 0.0,
        jobs_per_min=jobs_per_min,
        eta_s=_eta(remaining, jobs_per_min),
        referring_questions=_referring(session, run_id),
        queued_by_route=_queued_by_route(session, job_filter),
        stale_leases=_stale_leases(session, job_filter),
        workers=_workers(session, heartbeat_s=heartbeat_s),
    )


def generation_of_job(session: Session) -> ColumnElement[bool]:
    """The join of a job to its generation, for aggregates over many generations.

    They must read ix_generations_job_id_outcome_tokens (migration 0005), not the rows: a
    generation's row holds its chain, and on SQLite reaching the columns after it means walking
    the chain's overflow pages (0.3-0.7 s per 100,000 generations instead of ~0.05 s). SQLite's
    planner finds that index by itself in neither state a database can be in: without
    statistics it looks each generation up through the unique index on job_id and reads the
    row; after `ANALYZE` it scans ix_generations_outcome and reads every row. The extra term,
    true of every row (outcome is never NULL), lets the lookup use the index's second column,
    and on SQLite `likelihood(…, 0.9999)` tells the planner it selects nothing, so that it keeps
    the jobs outside and the index inside in both states. PostgreSQL plans it from its
    statistics either way."""
    if session.get_bind().dialect.name == "sqlite":
        # As SQL text: SQLAlchemy would compare a boolean function to 1, which hides the term
        # from the planner, and likelihood()'s probability must be a literal.
        every: ColumnElement[bool] | TextClause = text(
            "likelihood(generations.outcome >= '', 0.9999)"
        )
    else:
        every = Generation.outcome >= literal_column("''")
    return and_(Generation.job_id == Job.id, every)


def _outcome_counts(session: Session, run_id: int | None) -> Select[Outcome, int]:
    """Generations by outcome. Every generation has its job (job_id is a non-null foreign key),
    so the whole queue's counts need no join: they scan ix_generations_outcome alone. A run's
    join its jobs (ix_jobs_run_id_status), then read the covering index (generation_of_job)."""
    query = select(Generation.outcome, func.count()).group_by(Generation.outcome)
    if run_id is None:
        return query
    return query.join(Job, generation_of_job(session)).where(Job.run_id == run_id)


def _stale_leases(session: Session, where: list[ColumnElement[bool]]) -> int:
    count = session.scalar(
        select(func.count(Job.id)).where(
            Job.status == JobStatus.running, Job.lease_expires_at < utcnow(), *where
        )
    )
    return int(count or 0)


def _workers(session: Session, *, heartbeat_s: float) -> list[WorkerReport]:
    now = utcnow()
    reports = []
    for w in workers.recent(session, within=WORKERS_WINDOW):
        age = (now - w.heartbeat_at).total_seconds()
        state: WorkerStateName
        if w.stopped_at is not None:
            state = "stopped"
        elif age > 3 * heartbeat_s:
            state = "silent"
        else:
            state = "paused" if w.paused_since is not None else "running"
        reports.append(
            WorkerReport(
                name=w.name,
                teacher_model=w.teacher_model,
                state=state,
                in_flight=w.in_flight if state in ("running", "paused") else 0,
                last_seen_s=round(age, 1),
                paused_since=w.paused_since if state == "paused" else None,
                pause_reason=w.pause_reason if state == "paused" else None,
            )
        )
    return reports


def _queued_by_route(session: Session, where: list[ColumnElement[bool]]) -> dict[str, int]:
    """Queued jobs per (teacher model, prompt version): each waits for workers of its own."""
    rows = session.execute(
        select(Job.teacher_model, Job.prompt_version, func.count())
        .where(Job.status == JobStatus.queued, *where)
        .group_by(Job.teacher_model, Job.prompt_version)
    )
    return {f"{model} / {version}": int(n) for model, version, n in sorted(rows)}


def _finished(
    session: Session, where: list[ColumnElement[bool]]
) -> tuple[int, int, datetime | None, datetime | None]:
    """Generations finished under `where`: how many, their completion tokens, the first start
    and the last finish of their jobs."""
    count, tokens, first, last = session.execute(
        select(
            func.count(Job.id),
            func.coalesce(func.sum(Generation.completion_tokens), 0),
            func.min(Job.started_at),
            func.max(Job.finished_at),
        )
        .join(Generation, generation_of_job(session))
        .where(*where)
    ).one()
    return int(count), int(tokens or 0), first, last


def _referring(session: Session, run_id: int | None) -> dict[str, int]:
    """Questions (of the run, or all) whose options refer to others, by order rule."""
    # IN the referring kinds, not != free: an index serves IN (ix_questions_option_order, a few
    # entries per referring question), not a != that would read every question.
    referring = [kind for kind in OptionOrder if kind is not OptionOrder.free]
    query: Any = select(Question.option_order, func.count()).where(
        Question.option_order.in_(referring)
    )
    if run_id is not None:
        asked = select(Job.question_id).where(Job.run_id == run_id)
        query = query.where(Question.id.in_(asked))
    rows = session.execute(query.group_by(Question.option_order))
    return {str(kind): int(n) for kind, n in sorted(rows)}


def _eta(remaining: int, jobs_per_min: float) -> float | None:
    if not remaining:
        return 0.0
    return 60.0 * remaining / jobs_per_min if jobs_per_min else None
