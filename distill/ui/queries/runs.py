"""The runs page: every run's progress in a few grouped queries; one run in detail (the same
numbers `distill status` computes, per-subject outcomes, lengths, throughput over time)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from distill.jobs import status
from distill.jobs.status import generation_of_job
from distill.models import Generation, Job, JobStatus, Outcome, Question, Run
from distill.ui.cache import Memo
from distill.ui.queries.timeseries import floor_int, seconds_since
from schemas.status import StatusReport

HISTOGRAM_BINS = 24
SERIES_POINTS = 60


@dataclass(slots=True)
class RunRow:
    id: int
    kind: str
    teacher_model: str
    prompt_version: str
    samples_per_question: int
    created_at: datetime
    jobs: dict[str, int]
    outcomes: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.jobs.values())

    @property
    def graded(self) -> int:
        return sum(self.outcomes.values())

    @property
    def accuracy(self) -> float | None:
        return self.outcomes.get("correct", 0) / self.graded if self.graded else None

    @property
    def truncation(self) -> float | None:
        return self.outcomes.get("truncated", 0) / self.graded if self.graded else None

    @property
    def finished_share(self) -> float:
        done = self.jobs.get("done", 0) + self.jobs.get("failed", 0)
        return done / self.total if self.total else 0.0


@dataclass(slots=True)
class SubjectRow:
    subject: str
    outcomes: dict[str, int]

    @property
    def graded(self) -> int:
        return sum(self.outcomes.values())

    @property
    def accuracy(self) -> float | None:
        return self.outcomes.get("correct", 0) / self.graded if self.graded else None


@dataclass(slots=True)
class Histogram:
    width: int  # tokens per bin
    counts: list[int]


@dataclass(slots=True)
class RunDetail:
    run: RunRow
    params: dict[str, object]
    report: StatusReport
    truncation: float | None
    subjects: list[SubjectRow]
    lengths: Histogram
    # (seconds since the first start, completion tokens/s over that bucket)
    throughput: list[tuple[float, float]] = field(default_factory=list)
    bucket_s: float = 0.0


def _outcome_counts() -> dict[str, int]:
    return dict.fromkeys((o.value for o in Outcome), 0)


# A run's jobs by status, and its last finish: when these are unchanged, nothing the pages show
# about the run has changed (generations are only ever inserted, with their job's finish).
RunKey = tuple[tuple[tuple[str, int], ...], datetime | None]


def run_keys(session: Session, *, run_ids: list[int]) -> dict[int, RunKey]:
    jobs: dict[int, dict[str, int]] = {
        i: dict.fromkeys((s.value for s in JobStatus), 0) for i in run_ids
    }
    last: dict[int, datetime | None] = dict.fromkeys(run_ids)
    for run_id, job_status, n, finished in session.execute(
        select(Job.run_id, Job.status, func.count(), func.max(Job.finished_at))
        .where(Job.run_id.in_(run_ids))
        .group_by(Job.run_id, Job.status)
    ):
        jobs[run_id][job_status.value] = n
        held = last[run_id]
        if finished is not None and (held is None or finished > held):
            last[run_id] = finished
    return {i: (tuple(sorted(jobs[i].items())), last[i]) for i in run_ids}


def _outcomes_by_run(session: Session, run_ids: list[int]) -> dict[int, dict[str, int]]:
    outcomes: dict[int, dict[str, int]] = {i: _outcome_counts() for i in run_ids}
    if not run_ids:
        return outcomes
    for run_id, outcome, n in session.execute(
        select(Job.run_id, Generation.outcome, func.count())
        .join(Generation, generation_of_job(session))
        .where(Job.run_id.in_(run_ids))
        .group_by(Job.run_id, Generation.outcome)
    ):
        outcomes[run_id][outcome.value] = n
    return outcomes


def list_runs(session: Session, *, limit: int = 100, memo: Memo | None = None) -> list[RunRow]:
    """The newest `limit` runs with job counts by status and generation outcomes. With `memo`,
    a run's outcomes are counted again only when its jobs changed."""
    runs = session.execute(
        select(
            Run.id,
            Run.kind,
            Run.teacher_model,
            Run.prompt_version,
            Run.samples_per_question,
            Run.created_at,
        )
        .order_by(Run.id.desc())
        .limit(limit)
    ).all()
    if not runs:
        return []
    ids = [r.id for r in runs]
    keys = run_keys(session, run_ids=ids)
    outcomes: dict[int, dict[str, int]] = {}
    for i in ids:
        held = memo.get(("outcomes", i, keys[i])) if memo is not None else None
        if held is not None:
            outcomes[i] = held
    fresh = _outcomes_by_run(session, [i for i in ids if i not in outcomes])
    for i, counts in fresh.items():
        outcomes[i] = counts
        if memo is not None:
            memo.put(("outcomes", i, keys[i]), counts)
    return [
        RunRow(
            id=r.id,
            kind=r.kind,
            teacher_model=r.teacher_model,
            prompt_version=r.prompt_version,
            samples_per_question=r.samples_per_question,
            created_at=r.created_at,
            jobs=dict(keys[r.id][0]),
            outcomes=outcomes[r.id],
        )
        for r in runs
    ]


def run_detail(session: Session, *, run_id: int, memo: Memo | None = None) -> RunDetail | None:
    """One run: `distill status`'s report for it, and its aggregates. With `memo`, a finished
    run (nothing queued or running) is computed once until its jobs change again."""
    run = session.get(Run, run_id)
    if run is None:
        return None
    # The minute is in the key too: the workers seen recently are not in the run's key.
    minute = int(time.time() // 60)
    key = ("run", run_id, minute, run_keys(session, run_ids=[run_id])[run_id])
    held: RunDetail | None = memo.get(key) if memo is not None else None
    if held is not None:
        return held
    report = status.collect(session, run_id=run_id)
    row = RunRow(
        id=run.id,
        kind=run.kind,
        teacher_model=run.teacher_model,
        prompt_version=run.prompt_version,
        samples_per_question=run.samples_per_question,
        created_at=run.created_at,
        jobs=dict(report.jobs),
        outcomes=dict(report.outcomes),
    )
    lengths, series, bucket = lengths_and_throughput(session, run_id=run_id)
    detail = RunDetail(
        run=row,
        params=dict(run.params or {}),
        report=report,
        truncation=row.truncation,
        subjects=subjects(session, run_id=run_id),
        lengths=lengths,
        throughput=series,
        bucket_s=bucket,
    )
    if memo is not None and report.remaining == 0:
        memo.put(key, detail)
    return detail


def subjects(session: Session, *, run_id: int) -> list[SubjectRow]:
    rows: dict[str, dict[str, int]] = {}
    for subject, outcome, n in session.execute(
        select(Question.subject, Generation.outcome, func.count())
        .select_from(Job)
        .join(Generation, generation_of_job(session))
        .join(Question, Question.id == Job.question_id)
        .where(Job.run_id == run_id)
        .group_by(Question.subject, Generation.outcome)
    ):
        rows.setdefault(subject, _outcome_counts())[outcome.value] = n
    return [SubjectRow(subject=s, outcomes=o) for s, o in sorted(rows.items())]


def lengths_and_throughput(
    session: Session, *, run_id: int, bins: int = HISTOGRAM_BINS, points: int = SERIES_POINTS
) -> tuple[Histogram, list[tuple[float, float]], float]:
    """In one pass over the run's generations: completion tokens in `bins` equal bins up to its
    budget, and completion tokens per second over the run's life in at most `points` buckets
    (seconds since the first start, tokens/s), with the bucket's width in seconds."""
    budget, first, last = session.execute(
        select(func.max(Job.max_tokens), func.min(Job.started_at), func.max(Job.finished_at)).where(
            Job.run_id == run_id
        )
    ).one()
    width = max(1, -(-int(budget or 0) // bins))
    span = max((last - first).total_seconds(), 1.0) if first and last else 1.0
    bucket_s = max(span / points, 1.0)
    length_bin = Generation.completion_tokens // width
    time_bin = (
        floor_int(session, seconds_since(session, Job.finished_at, first) / bucket_s)
        if first is not None
        else literal(0)
    )
    counts = [0] * bins
    sums: dict[int, int] = {}
    for length_index, time_index, n, tokens in session.execute(
        select(length_bin, time_bin, func.count(), func.sum(Generation.completion_tokens))
        .select_from(Job)
        .join(Generation, generation_of_job(session))
        .where(Job.run_id == run_id)
        .group_by(length_bin, time_bin)
    ):
        if length_index is not None:
            counts[min(max(int(length_index), 0), bins - 1)] += int(n)
        if time_index is not None and tokens is not None:
            at = max(int(time_index), 0)
            sums[at] = sums.get(at, 0) + int(tokens)
    histogram = Histogram(width=width, counts=counts)
    if first is None or last is None:
        return histogram, [], 0.0
    count = min(points, int(span / bucket_s) + 1)
    series = [((i + 0.5) * bucket_s, sums.get(i, 0) / bucket_s) for i in range(count)]
    return histogram, series, bucket_s
