"""The job state machine: queued → running → done | failed, in batched transactions.

A claim takes a lease (token + expiry). Finishing requires the same token, so a worker whose lease
expired and was taken over cannot overwrite the new owner's result. Every transition is a
conditional UPDATE, which makes a duplicate or late message harmless.

The job row is the request of record: a claim returns the job's model, the run's sampling
parameters, the job's budget and the prompt of the job's prompt version, and the worker sends
exactly that. A worker claims only jobs for its own teacher model and for prompt versions its
code can render; any other job is reported as foreign, untouched and uncharged, to be routed to
the workers that can take it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, insert, or_, select, tuple_, update
from sqlalchemy.orm import Session

from distill.choices import gold_letter
from distill.models import Generation, Job, JobStatus, Question, Run, utcnow
from distill.prompts import PROMPTS, render_prompt
from schemas.teacher import TeacherRequest

# The run parameters that are sampling parameters of the request (the rest describe the run).
SAMPLING_PARAMS = ("temperature", "top_p")


@dataclass(frozen=True)
class ClaimedJob:
    job_id: int
    lease_token: str
    attempts: int
    request: TeacherRequest  # exactly what is sent, and what is stored with the generation
    prompt_version: str
    lost_leases: int  # earlier claims whose worker died or froze holding this job
    choice_order: list[int]
    gold_letter: str
    n_options: int

    @property
    def max_tokens(self) -> int:
        return self.request.max_tokens

    @property
    def messages(self) -> list[dict[str, str]]:
        return self.request.messages


@dataclass(frozen=True)
class ClaimResult:
    claimed: list[ClaimedJob] = field(default_factory=list)
    # Jobs someone else holds a live lease on: the message should come back later.
    busy: dict[int, float] = field(default_factory=dict)  # job id -> seconds until lease expiry
    # Jobs already final (or unknown): the message is stale and can be dropped.
    final: list[int] = field(default_factory=list)
    # Jobs whose lease expired once too often (worker died each time): now failed.
    exhausted: list[int] = field(default_factory=list)
    # Jobs for another teacher model or a prompt version this code cannot render: untouched,
    # to be routed to workers that can take them. job id -> (teacher model, prompt version)
    foreign: dict[int, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Success:
    job_id: int
    lease_token: str
    generation: dict[str, Any]  # Generation column values except job_id
    # The claim's attempt number. A result that arrives after its lease expired and the job was
    # put back in the queue (and not claimed again) is still that attempt's answer: kept.
    attempt: int | None = None


@dataclass(frozen=True)
class Failure:
    job_id: int
    lease_token: str
    error: str
    retryable: bool
    # False when the job is not at fault (e.g. the worker's endpoint does not serve its model):
    # it goes back to queued and the claim's attempt is given back.
    charge: bool = True


def claim(
    session: Session,
    job_ids: Sequence[int],
    *,
    lease_seconds: float,
    max_attempts: int,
    teacher_model: str | None = None,
    prompt_versions: Sequence[str] | None = None,
) -> ClaimResult:
    """Lease every claimable job among job_ids in one transaction: jobs for `teacher_model`
    (None: any) and of `prompt_versions` (default: those this code renders)."""
    now = utcnow()
    token = str(uuid.uuid4())
    ids = sorted(set(job_ids))
    versions = list(PROMPTS if prompt_versions is None else prompt_versions)
    claimable = or_(
        Job.status == JobStatus.queued,
        and_(Job.status == JobStatus.running, Job.lease_expires_at < now),
    )
    mine: ColumnElement[bool] = Job.prompt_version.in_(versions)
    if teacher_model is not None:
        mine = and_(mine, Job.teacher_model == teacher_model)
    # A job that already used its attempts and whose lease expired again has killed (or lost)
    # a worker max_attempts times: fail it instead of handing it out forever.
    exhausted = list(
        session.scalars(
            select(Job.id).where(
                Job.id.in_(ids),
                Job.status == JobStatus.running,
                Job.lease_expires_at < now,
                Job.attempts >= max_attempts,
            )
        )
    )
    if exhausted:
        session.execute(
            update(Job)
            .where(Job.id.in_(exhausted))
            .values(
                status=JobStatus.failed,
                lease_token=None,
                lease_expires_at=None,
                finished_at=now,
                lost_leases=Job.lost_leases + 1,
                last_error=f"lease expired after {max_attempts} attempts (worker lost or stalled)",
            )
        )
    session.execute(
        update(Job)
        .where(Job.id.in_(ids), claimable, mine, Job.attempts < max_attempts)
        .values(
            status=JobStatus.running,
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=Job.attempts + 1,
            # Claimed from a lease that ran out: the last worker lost it.
            lost_leases=Job.lost_leases + case((Job.status == JobStatus.running, 1), else_=0),
            started_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(
        select(
            Job.id,
            Job.attempts,
            Job.lost_leases,
            Job.teacher_model,
            Job.prompt_version,
            Job.max_tokens,
            Job.choice_order,
            Run.params,
            Question.question,
            Question.choices,
            Question.answer_index,
        )
        .join(Question, Question.id == Job.question_id)
        .join(Run, Run.id == Job.run_id)
        .where(Job.lease_token == token)
    )
    claimed = []
    for row in rows:
        job_id, attempts, lost, model, version, max_tokens, order, params, text, choices, gold = row
        sampling = {k: params[k] for k in SAMPLING_PARAMS if params.get(k) is not None}
        request = TeacherRequest(
            model=model,
            messages=render_prompt(version, text, [choices[i] for i in order]),
            max_tokens=max_tokens,
            **sampling,
        )
        claimed.append(
            ClaimedJob(
                job_id=job_id,
                lease_token=token,
                attempts=attempts,
                request=request,
                prompt_version=version,
                lost_leases=lost,
                choice_order=list(order),
                gold_letter=gold_letter(order, gold),
                n_options=len(choices),
            )
        )
    got = {c.job_id for c in claimed} | set(exhausted)
    busy: dict[int, float] = {}
    foreign: dict[int, tuple[str, str]] = {}
    rest = [i for i in ids if i not in got]
    if rest:
        for job_id, status, expires, model, version in session.execute(
            select(
                Job.id, Job.status, Job.lease_expires_at, Job.teacher_model, Job.prompt_version
            ).where(Job.id.in_(rest))
        ):
            live = status == JobStatus.running and expires is not None and expires >= now
            other = version not in versions or (
                teacher_model is not None and model != teacher_model
            )
            if other and not live and status in (JobStatus.queued, JobStatus.running):
                foreign[job_id] = (model, version)
            elif status == JobStatus.running and expires is not None:
                busy[job_id] = max((expires - now).total_seconds(), 0.0)
    final = [i for i in rest if i not in busy and i not in foreign]
    return ClaimResult(
        claimed=claimed, busy=busy, final=final, exhausted=exhausted, foreign=foreign
    )


def finish(
    session: Session, results: Sequence[Success | Failure], *, max_attempts: int
) -> dict[int, JobStatus | None]:
    """Record results in one transaction. Returns each job's new status, or None when the lease
    was lost (another worker owns the job now and its result wins)."""
    now = utcnow()
    statuses: dict[int, JobStatus | None] = {}
    # The common case in one statement, not one per job: answers whose claim still holds.
    plain: dict[int, Success] = {}
    rest: list[Success | Failure] = []
    for result in results:
        if isinstance(result, Success) and result.job_id not in plain:
            plain[result.job_id] = result
        else:
            rest.append(result)
    if plain:
        for job_id, status in _finish_answered(session, list(plain.values()), now=now).items():
            if status is None and plain[job_id].attempt is not None:
                rest.append(plain[job_id])  # its lease is gone, but it may be late, not lost
            else:
                statuses[job_id] = status
    for result in rest:
        owned: ColumnElement[bool] = and_(
            Job.id == result.job_id,
            Job.lease_token == result.lease_token,
            Job.status == JobStatus.running,
        )
        if isinstance(result, Success) and result.attempt is not None:
            # Late but not lost: the reconciler requeued the job when the lease expired (a
            # database outage stopped the renewals), and nobody has claimed it since.
            requeued = and_(
                Job.id == result.job_id,
                Job.status == JobStatus.queued,
                Job.lease_token.is_(None),
                Job.attempts == result.attempt,
            )
            owned = or_(owned, requeued)
        if isinstance(result, Success):
            values: dict[str, Any] = {"status": JobStatus.done, "last_error": None}
        elif not result.retryable:
            values = {"status": JobStatus.failed, "last_error": result.error}
        elif not result.charge:
            # Not the job's fault: back to the queue, and the claim's attempt is given back.
            values = {
                "status": JobStatus.queued,
                "last_error": result.error,
                "attempts": Job.attempts - 1,
            }
        else:
            # Retryable, but only while attempts remain; the attempts count was taken at claim.
            attempts = session.scalar(select(Job.attempts).where(owned))
            if attempts is None:
                statuses[result.job_id] = None
                continue
            failed = attempts >= max_attempts
            values = {
                "status": JobStatus.failed if failed else JobStatus.queued,
                "last_error": result.error
                + (f" (gave up after {attempts} attempts)" if failed else ""),
            }
        final = values["status"] in (JobStatus.done, JobStatus.failed)
        updated = session.execute(
            update(Job)
            .where(owned)
            .values(
                **values,
                lease_token=None,
                lease_expires_at=None,
                finished_at=now if final else None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if updated.rowcount != 1:  # type: ignore[attr-defined]
            statuses[result.job_id] = None
            continue
        if isinstance(result, Success):
            session.add(Generation(job_id=result.job_id, **result.generation))
        statuses[result.job_id] = values["status"]
    session.flush()
    return statuses


def _finish_answered(
    session: Session, results: Sequence[Success], *, now: Any
) -> dict[int, JobStatus | None]:
    """Mark done every job whose lease the result still holds, with one UPDATE … RETURNING, and
    store their generations with one INSERT; the others lost their lease (None)."""
    done = set(
        session.scalars(
            update(Job)
            .where(
                # The id list lets the planner use the primary key (SQLite will not for a row
                # value IN); the pairs then check that each result still holds its lease.
                Job.id.in_([r.job_id for r in results]),
                tuple_(Job.id, Job.lease_token).in_([(r.job_id, r.lease_token) for r in results]),
                Job.status == JobStatus.running,
            )
            .values(
                status=JobStatus.done,
                last_error=None,
                lease_token=None,
                lease_expires_at=None,
                finished_at=now,
                updated_at=now,
            )
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
    )
    rows = [{"job_id": r.job_id, **r.generation} for r in results if r.job_id in done]
    if rows:
        session.execute(insert(Generation), rows)
    return {r.job_id: JobStatus.done if r.job_id in done else None for r in results}


def stuck_job_ids(session: Session) -> list[int]:
    """Queued jobs (whose message may have been lost) and running jobs whose lease expired."""
    now = utcnow()
    return list(
        session.scalars(
            select(Job.id)
            .where(
                or_(
                    Job.status == JobStatus.queued,
                    and_(Job.status == JobStatus.running, Job.lease_expires_at < now),
                )
            )
            .order_by(Job.id)
        )
    )


def renew(session: Session, tokens: Sequence[str], *, lease_seconds: float) -> int:
    """Extend the leases of running jobs held under `tokens` (the worker's heartbeat while their
    requests run). Returns how many jobs were renewed."""
    if not tokens:
        return 0
    expires = utcnow() + timedelta(seconds=lease_seconds)
    renewed = 0
    unique = sorted(set(tokens))
    for start in range(0, len(unique), 500):
        result = session.execute(
            update(Job)
            .where(
                Job.lease_token.in_(unique[start : start + 500]), Job.status == JobStatus.running
            )
            .values(lease_expires_at=expires)
            .execution_options(synchronize_session=False)
        )
        renewed += int(result.rowcount)  # type: ignore[attr-defined]
    return renewed
