"""The reconciler: jobs the broker or a dead worker forgot are put back on their way, without
waiting for Redis's visibility timeout.

Every worker runs it every DISTILL_RECONCILE_SECONDS, and `distill reconcile` runs it once.
Each pass:

1. returns running jobs whose lease expired (their worker died or froze: a live worker renews
   its leases every heartbeat) to `queued`, keeping the attempt the claim counted, or fails them
   once they used every attempt (a job that kills its worker every time), and re-sends them —
   but not within two heartbeats of a database outage the worker saw, when every lease ran out
   because nobody could renew it, and its holders have answers waiting to be stored;
2. when the broker lost its data (distill.jobs.broker), marks every queued job unpublished;
3. sends queued jobs that are unpublished (an `enqueue` interrupted between its commit and its
   last message, a broker down at the time, jobs held back by back-pressure, the broker's
   losses), as long as their queue holds fewer than DISTILL_BROKER_BACKLOG jobs;
4. gives back messages a worker took and died holding before it claimed their jobs (queued
   jobs whose message has been unacknowledged for longer than a lease).

Several reconcilers may run at once: each transition is a conditional UPDATE of rows locked with
SKIP LOCKED on PostgreSQL (SQLite serialises writers), so a job is requeued once, and a message
sent twice costs nothing (the claim decides)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from distill.db import session_scope
from distill.jobs import broker
from distill.jobs.publish import JOBS_PER_MESSAGE, TASK_NAMES, publish_committed
from distill.models import Job, JobStatus, utcnow

log = logging.getLogger(__name__)

BATCH = 5000
# A job committed less than this long ago may still be on its way: its enqueue is publishing.
PUBLISH_GRACE = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Reconciled:
    requeued: int  # expired leases back in the queue
    failed: int  # expired once too often
    published: int  # messages sent
    broker_lost: bool
    given_back: int = 0  # messages a dead worker held, back in their queues

    def __bool__(self) -> bool:
        return bool(
            self.requeued or self.failed or self.published or self.broker_lost or self.given_back
        )


def _locked_ids(session: Session, *conditions: object) -> list[int]:
    query = (
        select(Job.id)
        .where(*conditions)  # type: ignore[arg-type]
        .order_by(Job.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def expire_leases(session: Session, *, max_attempts: int) -> tuple[list[int], int]:
    """Expired leases back to queued (or failed after max_attempts). Returns (requeued ids,
    number failed)."""
    now = utcnow()
    expired = [Job.status == JobStatus.running, Job.lease_expires_at < now]
    ids = _locked_ids(session, *expired)
    if not ids:
        return [], 0
    failed = session.execute(
        update(Job)
        .where(Job.id.in_(ids), *expired, Job.attempts >= max_attempts)
        .values(
            status=JobStatus.failed,
            lease_token=None,
            lease_expires_at=None,
            finished_at=now,
            updated_at=now,
            lost_leases=Job.lost_leases + 1,
            last_error=f"lease expired after {max_attempts} attempts (worker lost or stalled)",
        )
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    requeued = list(
        session.scalars(
            update(Job)
            .where(Job.id.in_(ids), *expired)
            .values(
                status=JobStatus.queued,
                lease_token=None,
                lease_expires_at=None,
                lost_leases=Job.lost_leases + 1,
                updated_at=now,
                # Its message went with the worker: until this pass (or the next, should this
                # one fail before it publishes) sends a new one, it has none.
                published_at=None,
                last_error="lease expired (worker lost or stalled): back in the queue",
            )
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
    )
    return requeued, int(failed)


def unpublished(session: Session) -> list[int]:
    """Queued jobs without a message (past the grace), up to BATCH of them."""
    return _locked_ids(
        session,
        Job.status == JobStatus.queued,
        Job.published_at.is_(None),
        Job.updated_at < utcnow() - PUBLISH_GRACE,
    )


def forget_published(session: Session) -> int:
    """The broker lost its messages: every queued job is without one. Returns how many."""
    return int(
        session.execute(
            update(Job)
            .where(Job.status == JobStatus.queued, Job.published_at.is_not(None))
            .values(published_at=None, updated_at=utcnow() - PUBLISH_GRACE)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
    )


def feed(
    engine: Engine, *, broker_url: str, per_message: int, backlog: int | None, first: list[int]
) -> set[int]:
    """Send `first`, then unpublished jobs BATCH at a time, until none are left or the queue
    holds `backlog` jobs. Returns the ids sent."""
    sent_ids: set[int] = set()
    pending = first
    while True:
        if not pending:
            with session_scope(engine) as session:
                pending = [i for i in unpublished(session) if i not in sent_ids]
            if not pending:
                break
        sent = publish_committed(
            engine, pending, broker_url=broker_url, per_message=per_message, backlog=backlog
        )
        sent_ids.update(sorted(pending)[:sent])
        if sent < len(pending):
            break  # the queue is full: the rest wait for the next pass
        pending = []
    return sent_ids


def held_by_the_dead(
    engine: Engine, *, broker_url: str, lease_seconds: float, sent: Collection[int] = ()
) -> int:
    """Give back the messages that a worker took more than a lease ago and holding a job it
    never claimed, still queued (distill.jobs.broker.held_too_long), but for jobs in `sent`
    (just given a new message). A live worker claims every job of a message it takes at once,
    so such a message was taken by a worker that died first. Returns how many."""
    held = broker.held_too_long(broker_url, task_names=TASK_NAMES, older_than=lease_seconds)
    held = {tag: [i for i in ids if i not in sent] for tag, ids in held.items()}
    held = {tag: ids for tag, ids in held.items() if ids}
    if not held:
        return 0
    with session_scope(engine) as session:
        wanted = sorted({i for ids in held.values() for i in ids})
        queued = set(
            session.scalars(
                select(Job.id).where(Job.id.in_(wanted), Job.status == JobStatus.queued)
            )
        )
    tags = [tag for tag, ids in held.items() if queued.intersection(ids)]
    if tags:
        broker.give_back(broker_url, tags)
    return len(tags)


def reconcile(
    engine: Engine,
    *,
    broker_url: str,
    max_attempts: int,
    lease_seconds: float,
    per_message: int = JOBS_PER_MESSAGE,
    backlog: int | None = None,
    expire: bool = True,
) -> Reconciled:
    """One pass (see the module docstring); `expire=False` leaves expired leases alone (a
    worker just after a database outage: distill.jobs.runner.Runner._may_expire)."""
    requeued: list[int] = []
    failed = 0
    if expire:
        with session_scope(engine) as session:
            requeued, failed = expire_leases(session, max_attempts=max_attempts)
    lost = broker.lost_messages(broker_url)
    if lost:
        with session_scope(engine) as session:
            forget_published(session)
    sent = feed(
        engine, broker_url=broker_url, per_message=per_message, backlog=backlog, first=requeued
    )
    given_back = held_by_the_dead(
        engine, broker_url=broker_url, lease_seconds=lease_seconds, sent=sent
    )
    result = Reconciled(len(requeued), failed, len(sent), lost, given_back)
    if result:
        log.info(
            "reconciled: %d expired lease(s) requeued, %d failed, %d message(s) sent, "
            "%d given back from dead workers%s",
            result.requeued,
            result.failed,
            result.published,
            result.given_back,
            "; the broker had lost its messages" if lost else "",
        )
    return result
