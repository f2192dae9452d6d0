"""Messages of several jobs, and back-pressure: an enqueue sends at most DISTILL_BROKER_BACKLOG
jobs to the broker and leaves the rest in the database, which the reconciler sends as the queue
drains; nothing is lost whatever the broker loses."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from sqlalchemy import Engine, func, select, update
from typer.testing import CliRunner

from distill.cli import app
from distill.config import Settings
from distill.db import session_scope
from distill.jobs import publish, reconcile
from distill.models import Job, utcnow
from tests.support.factories import add_questions, enqueue
from tests.support.messages import job_ids, queued_job_ids
from tests.support.workers import TEACHER_QUEUE
from workers.main import message_threads

runner = CliRunner()


def _url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def _unpublished(engine: Engine) -> int:
    with session_scope(engine) as s:
        return int(s.scalar(select(func.count()).where(Job.published_at.is_(None))) or 0)


def _past_the_grace(engine: Engine) -> None:
    with session_scope(engine) as s:
        s.execute(update(Job).values(updated_at=utcnow() - timedelta(minutes=5)))


def test_messages_carry_up_to_jobs_per_message_ids_in_order(
    engine: Engine, broker: redis.Redis
) -> None:
    add_questions(engine, 40)
    ids = enqueue(engine, 40).job_ids
    with session_scope(engine) as s:
        publish.commit_and_publish(s, ids, broker_url=_url(broker), per_message=16)
    messages = [job_ids(bytes(m)) for m in reversed(broker.lrange(TEACHER_QUEUE, 0, -1))]
    assert [len(m) for m in messages] == [16, 16, 8]
    assert [i for m in messages for i in m] == ids


def test_enqueue_sends_up_to_the_backlog_and_says_where_the_rest_are(
    settings: Settings, engine: Engine, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "PUBLISH_CHUNK", 16)
    monkeypatch.setenv("DISTILL_BROKER_BACKLOG", "40")
    monkeypatch.setenv("DISTILL_JOBS_PER_MESSAGE", "8")
    add_questions(engine, 100)
    result = runner.invoke(app, ["enqueue", "--n", "100", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # Chunks of 16 are sent while the queue holds at most 40 jobs: 32 sent, 68 left.
    assert (summary["jobs"], summary["sent"], summary["deferred"]) == (100, 32, 68)
    assert len(queued_job_ids(broker, TEACHER_QUEUE)) == 32 and _unpublished(engine) == 68
    text = runner.invoke(app, ["enqueue", "--n", "100", "--samples", "2"])
    assert "workers send them as the queue drains" in text.output, text.output


def test_the_reconciler_feeds_the_rest_as_the_queue_drains(
    engine: Engine, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "PUBLISH_CHUNK", 10)
    monkeypatch.setattr(reconcile, "BATCH", 20)  # several batches in one pass
    add_questions(engine, 100)
    ids = enqueue(engine, 100).job_ids
    url = _url(broker)
    kwargs = {"broker_url": url, "max_attempts": 3, "lease_seconds": 60, "per_message": 5}
    with session_scope(engine) as s:
        sent = publish.commit_and_publish(s, ids, broker_url=url, per_message=5, backlog=30)
    assert (sent.jobs, sent.deferred) == (30, 70)
    # Within the grace an enqueue may still be sending them: left alone.
    assert reconcile.reconcile(engine, backlog=30, **kwargs).published == 0
    _past_the_grace(engine)
    assert reconcile.reconcile(engine, backlog=30, **kwargs).published == 0  # still full
    broker.delete(TEACHER_QUEUE)  # the workers took them
    assert reconcile.reconcile(engine, backlog=30, **kwargs).published == 30
    broker.delete(TEACHER_QUEUE)
    # Without a bound, one pass sends everything left, BATCH at a time.
    assert reconcile.reconcile(engine, backlog=None, **kwargs).published == 40
    assert _unpublished(engine) == 0 and sorted(queued_job_ids(broker, TEACHER_QUEUE)) == ids[60:]


def test_a_broker_that_lost_more_than_a_batch_gets_every_job_back(
    engine: Engine, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every queued job is marked unsent when the broker lost its data, so a pass that sends one
    batch (or stops at the backlog) leaves the rest to the next, instead of forgetting them."""
    monkeypatch.setattr(reconcile, "BATCH", 8)
    add_questions(engine, 30)
    ids = enqueue(engine, 30).job_ids
    url = _url(broker)
    with session_scope(engine) as s:
        publish.commit_and_publish(s, ids, broker_url=url)
    broker.flushall()  # the broker loses its messages, and its mark
    kwargs = {"broker_url": url, "max_attempts": 3, "lease_seconds": 60}
    first = reconcile.reconcile(engine, backlog=20, per_message=4, **kwargs)
    # Two batches of 8 fit under the backlog of 20; the third would not.
    assert first.broker_lost and first.published == 16 and _unpublished(engine) == 14
    broker.delete(TEACHER_QUEUE)
    again = reconcile.reconcile(engine, backlog=20, per_message=4, **kwargs)
    assert not again.broker_lost and again.published == 14 and _unpublished(engine) == 0
    assert queued_job_ids(broker, TEACHER_QUEUE) == ids[16:]


@pytest.mark.parametrize(
    ("concurrency", "per_message", "threads"),
    [(64, 16, 16), (1024, 16, 256), (1, 16, 2), (5, 1, 20)],
)
def test_a_worker_holds_messages_for_four_times_its_requests_in_flight(
    concurrency: int, per_message: int, threads: int
) -> None:
    settings = Settings(concurrency=concurrency, jobs_per_message=per_message)
    assert message_threads(settings) == threads
