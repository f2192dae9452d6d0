"""Publishing job ids to the broker, after the commit, on the queue of the workers that can take
them.

A message carries a short list of job ids (DISTILL_JOBS_PER_MESSAGE, 16 by default), not one:
Celery's cost is per message (delivery, ack, tracing: most of an idle worker's CPU per job when
each job had its own), and a worker claims a message's jobs in one transaction anyway.

Jobs are routed by (teacher model, prompt version), one Celery queue each: a worker consumes the
queues of its own teacher model for the prompt versions its code renders, so a job is never sent
to another model or asked in words it was not made with. Only the task's name and the queue names
are shared with `workers/`, so the CLI publishes without importing the worker side (imports flow
distill ← workers)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from celery import Celery
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from distill import redact
from distill.db import session_scope
from distill.errors import UserError
from distill.jobs import broker
from distill.models import Job, utcnow
from distill.prompts import PROMPTS

TASK_NAME = "distill.run_jobs"  # args: [[job id, ...]]
# One job id per message, as distill sent them before messages carried lists; still consumed.
SINGLE_TASK_NAME = "distill.run_job"
TASK_NAMES = (TASK_NAME, SINGLE_TASK_NAME)
JOBS_PER_MESSAGE = 16
# Where every message went before routing; workers still drain it, and re-route what they find.
LEGACY_QUEUE = "distill"
IN_CHUNKS = 500

Route = tuple[str, str]  # (teacher model, prompt version)


def queue_name(route: Route) -> str:
    model, version = route
    return f"distill.{model}.{version}"


def worker_queues(teacher_model: str) -> list[str]:
    """The queues a worker for `teacher_model` consumes: one per prompt version this code
    renders, and the legacy queue."""
    return [queue_name((teacher_model, version)) for version in PROMPTS] + [LEGACY_QUEUE]


@lru_cache(maxsize=4)
def producer_app(broker_url: str) -> Celery:
    app = Celery("distill-producer", broker=broker_url)
    app.conf.update(task_serializer="json", accept_content=["json"])
    return app


def publish(
    routes: Mapping[Route, Iterable[int]],
    *,
    broker_url: str,
    countdown: float | None = None,
    per_message: int = JOBS_PER_MESSAGE,
) -> int:
    """Send the job ids, `per_message` to a message, on their route's queue, over one
    connection. Call only after the jobs are committed: a worker must find the rows when the
    message arrives. Returns how many job ids were sent."""
    app = producer_app(broker_url)
    sent = 0
    with app.producer_or_acquire() as producer:
        for route, job_ids in routes.items():
            queue = queue_name(route)
            ids = list(job_ids)
            for start in range(0, len(ids), per_message):
                chunk = ids[start : start + per_message]
                app.send_task(
                    TASK_NAME, args=[chunk], queue=queue, producer=producer, countdown=countdown
                )
                sent += len(chunk)
    return sent


def job_routes(session: Session, job_ids: Sequence[int]) -> dict[Route, list[int]]:
    """The jobs grouped by route, ids in order."""
    routes: dict[Route, list[int]] = defaultdict(list)
    ids = sorted(set(job_ids))
    for start in range(0, len(ids), IN_CHUNKS):
        rows = session.execute(
            select(Job.id, Job.teacher_model, Job.prompt_version)
            .where(Job.id.in_(ids[start : start + IN_CHUNKS]))
            .order_by(Job.id)
        )
        for job_id, model, version in rows:
            routes[(model, version)].append(job_id)
    return dict(routes)


PUBLISH_CHUNK = 1024  # a multiple of the usual message size


def publish_committed(
    engine: Engine,
    job_ids: Sequence[int],
    *,
    broker_url: str,
    per_message: int = JOBS_PER_MESSAGE,
    backlog: int | None = None,
) -> int:
    """Send the messages of committed jobs, a chunk at a time, marking each chunk published
    once it reached the broker: whatever is interrupted, a job without its message keeps
    `published_at` NULL and the reconciler sends it. With a `backlog`, stop before a queue
    would hold more than that many jobs' messages: the rest stay unpublished, for the
    reconciler to send as the queue drains (back-pressure). Returns how many were sent."""
    sent = 0
    ids = sorted(set(job_ids))
    broker.mark(broker_url)
    for start in range(0, len(ids), PUBLISH_CHUNK):
        chunk = ids[start : start + PUBLISH_CHUNK]
        with session_scope(engine) as session:
            routes = job_routes(session, chunk)
        if backlog is not None and _full(broker_url, routes, len(chunk), per_message, backlog):
            break
        publish(routes, broker_url=broker_url, per_message=per_message)
        _mark_published(engine, chunk)
        sent += len(chunk)
    return sent


def _full(
    broker_url: str, routes: Mapping[Route, object], adding: int, per_message: int, backlog: int
) -> bool:
    waiting = broker.waiting_messages(broker_url, [queue_name(route) for route in routes])
    return waiting is not None and waiting * per_message + adding > backlog


def _mark_published(engine: Engine, chunk: Sequence[int]) -> None:
    """Record that the chunk's messages reached the broker. Workers are claiming and finishing
    the same rows by now (an instant teacher answers before this runs), so PostgreSQL can pick
    this statement as a deadlock victim, or SQLite find the file locked: retried, as such
    transient conflicts are. Were it to fail for good the messages are sent all the same; the
    reconciler would only send them again (a duplicate changes nothing)."""
    for attempt in Retrying(
        stop=stop_after_attempt(6),
        wait=wait_random_exponential(multiplier=0.05, max=2),
        retry=retry_if_exception_type(OperationalError),
        reraise=True,
    ):
        with attempt, session_scope(engine) as session:
            session.execute(
                update(Job)
                .where(Job.id.in_(chunk))
                .values(published_at=utcnow())
                .execution_options(synchronize_session=False)
            )


@dataclass(frozen=True)
class Published:
    jobs: int  # sent now
    deferred: int = 0  # left for the workers to send as the queue drains (back-pressure)


class PublishInterrupted(UserError):
    """Ctrl-C while the messages of committed jobs were being sent."""


def commit_and_publish(
    session: Session,
    job_ids: Sequence[int],
    *,
    broker_url: str,
    per_message: int = JOBS_PER_MESSAGE,
    backlog: int | None = None,
) -> Published:
    """Commit the caller's transaction, then publish `job_ids`: the one way jobs reach workers.

    Raises UserError when the broker cannot be reached, and PublishInterrupted on Ctrl-C: the
    jobs are saved by then, and the message says what happens to those not sent yet."""
    session.commit()
    if not job_ids:
        return Published(jobs=0)
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    try:
        sent = publish_committed(
            engine, job_ids, broker_url=broker_url, per_message=per_message, backlog=backlog
        )
    except KeyboardInterrupt:
        raise PublishInterrupted(
            f"interrupted: {len(job_ids)} job(s) saved, not all of them sent yet; a worker's "
            "reconciler sends the rest within a minute (or run `distill reconcile`)"
        ) from None
    except Exception as exc:
        # Say which side failed, and how: a locked database is not an unreachable broker.
        detail = redact.text(str(exc).strip().splitlines()[0][:200]) if str(exc).strip() else ""
        what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        if type(exc).__module__.startswith("sqlalchemy"):
            raise UserError(
                f"{len(job_ids)} job(s) saved, but recording which were sent failed ({what}); "
                "a worker's reconciler sends any that were not (or run `distill reconcile`)"
            ) from exc
        raise UserError(
            f"{len(job_ids)} job(s) saved but the broker at {redact.url(broker_url)} is "
            f"unreachable ({what}); a worker's reconciler sends them once it answers (or run "
            "`distill reconcile`)"
        ) from exc
    return Published(jobs=sent, deferred=len(set(job_ids)) - sent)
