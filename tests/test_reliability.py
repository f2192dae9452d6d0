"""The parts that keep a run alive, each on its own against the real database: lease renewal,
late results, the reconciler, publishing that survives an interrupt, patient result writes,
unstorable rows, and the outage gate."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy import exc as sa_exc

from distill.config import Settings
from distill.db import session_scope
from distill.errors import UserError
from distill.jobs import broker as marks
from distill.jobs import publish, reconcile, results
from distill.jobs.lease import Success, claim, finish, renew
from distill.jobs.outage import CONSECUTIVE, OutageGate
from distill.models import Generation, Job, JobStatus, utcnow
from distill.teacher.client import TeacherError
from tests.support.factories import add_questions, enqueue, generation
from tests.support.messages import queued_job_ids
from tests.support.workers import TEACHER_QUEUE


def _claim(engine: Engine, ids: list[int], *, lease: float = 60.0) -> Any:
    with session_scope(engine) as s:
        return claim(s, ids, lease_seconds=lease, max_attempts=3)


def _expire(engine: Engine, *ids: int) -> None:
    with session_scope(engine) as s:
        s.execute(
            update(Job)
            .where(Job.id.in_(ids))
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def _job(engine: Engine, job_id: int) -> Job:
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


# --- leases -------------------------------------------------------------------------------------


def test_the_heartbeat_renews_the_leases_it_holds(engine: Engine) -> None:
    add_questions(engine, 3)
    ids = enqueue(engine, 3).job_ids
    held = _claim(engine, ids[:2], lease=5.0).claimed
    before = _job(engine, ids[0]).lease_expires_at
    with session_scope(engine) as s:
        assert renew(s, [c.lease_token for c in held], lease_seconds=600) == 2
    after = _job(engine, ids[0]).lease_expires_at
    assert before is not None and after is not None and after - before > timedelta(seconds=500)
    assert _job(engine, ids[2]).lease_expires_at is None  # not held: untouched


def test_a_late_result_is_kept_unless_the_job_was_claimed_again(engine: Engine) -> None:
    add_questions(engine, 2)
    kept, lost = enqueue(engine, 2).job_ids
    first = {c.job_id: c for c in _claim(engine, [kept, lost]).claimed}
    _expire(engine, kept, lost)
    with session_scope(engine) as s:
        requeued, failed = reconcile.expire_leases(s, max_attempts=3)
    assert sorted(requeued) == [kept, lost] and failed == 0
    _claim(engine, [lost])  # someone else took `lost` again: its old answer must not win
    late = [
        Success(j, first[j].lease_token, generation(), attempt=first[j].attempts)
        for j in (kept, lost)
    ]
    with session_scope(engine) as s:
        statuses = finish(s, late, max_attempts=3)
    assert statuses == {kept: JobStatus.done, lost: None}
    assert _job(engine, kept).status == JobStatus.done
    assert _job(engine, lost).status == JobStatus.running


def test_answers_whose_leases_hold_are_stored_by_one_update_and_one_insert(
    engine: Engine,
) -> None:
    """The runner's answers carry their claim's attempt (for the late case above); that must
    not send each of them down the one-job-at-a-time path, which cost the worker a third of
    its CPU (docs/benchmarks.md)."""
    add_questions(engine, 6)
    ids = enqueue(engine, 6).job_ids
    held = _claim(engine, ids).claimed
    answers = [Success(c.job_id, c.lease_token, generation(), attempt=c.attempts) for c in held]
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        with session_scope(engine) as s:
            statuses = finish(s, answers, max_attempts=3)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statuses == dict.fromkeys(ids, JobStatus.done)
    assert statements.count("UPDATE") == 1 and statements.count("INSERT") == 1
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Generation)) == 6


# --- the reconciler -----------------------------------------------------------------------------


def test_expired_leases_go_back_and_exhausted_ones_fail(engine: Engine) -> None:
    add_questions(engine, 2)
    again, poison = enqueue(engine, 2).job_ids
    _claim(engine, [again, poison])
    with session_scope(engine) as s:
        s.execute(update(Job).where(Job.id == poison).values(attempts=3))
    _expire(engine, again, poison)
    with session_scope(engine) as s:
        requeued, failed = reconcile.expire_leases(s, max_attempts=3)
    assert requeued == [again] and failed == 1
    job = _job(engine, again)
    assert (job.status, job.attempts, job.lease_token) == (JobStatus.queued, 1, None)
    assert job.lost_leases == 1 and job.published_at is None  # its message went with it
    dead = _job(engine, poison)
    assert dead.status == JobStatus.failed and dead.lost_leases == 1
    assert dead.last_error == "lease expired after 3 attempts (worker lost or stalled)"


def test_a_lease_taken_over_after_it_ran_out_counts_as_lost(engine: Engine) -> None:
    """Claiming a running job whose lease expired (before any reconciler saw it) is the other
    way a lost worker is noticed; a job handed back or queued normally loses nothing."""
    add_questions(engine, 2)
    lost, fine = enqueue(engine, 2).job_ids
    _claim(engine, [lost, fine])
    _expire(engine, lost)
    with session_scope(engine) as s:
        s.execute(update(Job).where(Job.id == fine).values(status=JobStatus.queued))
    again = {c.job_id: c for c in _claim(engine, [lost, fine]).claimed}
    assert (again[lost].lost_leases, again[lost].attempts) == (1, 2)
    assert (again[fine].lost_leases, again[fine].attempts) == (0, 2)


def test_a_pass_told_not_to_expire_leaves_expired_leases_alone(
    engine: Engine, broker: redis.Redis
) -> None:
    """What a worker's reconciler does just after a database outage (Runner._may_expire)."""
    add_questions(engine, 2)
    ids = enqueue(engine, 2).job_ids
    _claim(engine, ids)
    _expire(engine, *ids)
    passes = [
        reconcile.reconcile(
            engine,
            broker_url=_url(broker),
            max_attempts=3,
            lease_seconds=60,
            expire=expire,
        )
        for expire in (False, True)
    ]
    assert (passes[0].requeued, passes[1].requeued) == (0, 2)


def test_reconcilers_running_at_once_requeue_each_job_once(engine: Engine) -> None:
    add_questions(engine, 40)
    ids = enqueue(engine, 40).job_ids
    _claim(engine, ids)
    _expire(engine, *ids)
    found: list[list[int]] = []

    def one() -> None:
        with session_scope(engine) as s:
            found.append(reconcile.expire_leases(s, max_attempts=3)[0])

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [job_id for batch in found for job_id in batch]
    assert sorted(everything) == ids  # each job once, by one of them


def test_the_reconciler_sends_what_was_never_published_and_what_the_broker_lost(
    engine: Engine, broker: redis.Redis, settings: Settings
) -> None:
    add_questions(engine, 6)
    ids = enqueue(engine, 6).job_ids  # committed, never published (as after an interrupt)
    with session_scope(engine) as s:
        s.execute(update(Job).values(updated_at=utcnow() - timedelta(minutes=5)))
    broker_url = _url(broker)
    done = reconcile.reconcile(engine, broker_url=broker_url, max_attempts=3, lease_seconds=60)
    # The broker held no mark: it "lost" everything, and every queued job was sent once.
    assert done.published == 6 and len(queued_job_ids(broker, TEACHER_QUEUE)) == 6
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).where(Job.published_at.is_(None))) == 0
    again = reconcile.reconcile(engine, broker_url=broker_url, max_attempts=3, lease_seconds=60)
    assert not again and len(queued_job_ids(broker, TEACHER_QUEUE)) == 6  # nothing more
    broker.flushall()  # the broker loses its messages
    lost = reconcile.reconcile(engine, broker_url=broker_url, max_attempts=3, lease_seconds=60)
    assert lost.broker_lost and lost.published == 6
    assert sorted(queued_job_ids(broker, TEACHER_QUEUE)) == ids


def _url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def test_an_interrupted_publish_leaves_the_rest_to_the_reconciler(
    engine: Engine, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_questions(engine, 30)
    ids = enqueue(engine, 30).job_ids
    real = publish.publish
    calls = 0

    def interrupted(routes: Any, **kw: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return real(routes, **kw)

    monkeypatch.setattr(publish, "PUBLISH_CHUNK", 10)
    monkeypatch.setattr(publish, "publish", interrupted)
    with session_scope(engine) as s, pytest.raises(publish.PublishInterrupted, match="reconcile"):
        publish.commit_and_publish(s, ids, broker_url=_url(broker))
    with session_scope(engine) as s:
        unsent = s.scalar(select(func.count()).where(Job.published_at.is_(None)))
    assert unsent == 20 and len(queued_job_ids(broker, TEACHER_QUEUE)) == 10  # marked unsent


def test_a_failed_publish_says_which_side_failed_and_how_without_secrets(
    engine: Engine, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A locked database while marking messages sent is not "the broker is unreachable"; and
    the broker's own error is quoted, its URL's password removed."""
    add_questions(engine, 4)
    ids = enqueue(engine, 4).job_ids

    def locked(routes: Any, **kw: Any) -> int:
        raise sa_exc.OperationalError("UPDATE jobs", {}, Exception("database is locked"))

    monkeypatch.setattr(publish, "publish", locked)
    with session_scope(engine) as s, pytest.raises(UserError) as caught:
        publish.commit_and_publish(s, ids, broker_url=_url(broker))
    assert "recording which were sent failed" in str(caught.value)
    assert "database is locked" in str(caught.value) and "broker" not in str(caught.value)

    def refused(routes: Any, **kw: Any) -> int:
        raise OSError("connecting to redis://:hunter2@127.0.0.1:1/0 was refused")

    monkeypatch.setattr(publish, "publish", refused)
    monkeypatch.setattr(marks, "mark", lambda url: None)
    with session_scope(engine) as s, pytest.raises(UserError) as caught:
        publish.commit_and_publish(s, ids, broker_url="redis://:hunter2@127.0.0.1:1/0")
    message = str(caught.value)
    assert "unreachable (OSError: connecting to redis://***@127.0.0.1:1/0 was refused)" in message
    assert "hunter2" not in message


def test_marking_messages_sent_survives_a_deadlock_victim(
    engine: Engine, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in benchmarks/bench_queue.py on PostgreSQL: workers finish a chunk's jobs before the
    enqueue marks them sent, and PostgreSQL aborts the marking as a deadlock victim. It is
    retried; the enqueue succeeds."""
    add_questions(engine, 6)
    ids = enqueue(engine, 6).job_ids
    real = publish.session_scope
    victims = 0

    def scope(*args: Any, **kwargs: Any) -> Any:
        nonlocal victims
        if victims < 2:
            victims += 1
            raise sa_exc.OperationalError("UPDATE jobs", {}, Exception("deadlock detected"))
        return real(*args, **kwargs)

    original = publish._mark_published

    def marking(engine_: Engine, chunk: Any) -> None:
        monkeypatch.setattr(publish, "session_scope", scope)
        try:
            original(engine_, chunk)
        finally:
            monkeypatch.setattr(publish, "session_scope", real)

    monkeypatch.setattr(publish, "_mark_published", marking)
    with session_scope(engine) as s:
        assert publish.commit_and_publish(s, ids, broker_url=_url(broker)).jobs == 6
    assert victims == 2
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).where(Job.published_at.is_(None))) == 0


def test_a_lost_broker_is_noticed_once(broker: redis.Redis) -> None:
    url = _url(broker)
    marks.mark(url)
    assert not marks.lost_messages(url)
    broker.flushall()
    # Several reconcilers may look at once: exactly one of them is told to re-send.
    told = [marks.lost_messages(url) for _ in range(3)]
    assert told == [True, False, False]
    assert marks.redis_url("amqp://guest@localhost//") is None
    assert marks.redis_url("redis+socket:///run/distill/redis.sock") == (
        "unix:///run/distill/redis.sock"
    )


# --- storing results ----------------------------------------------------------------------------


def test_results_wait_for_the_database_then_are_stored(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_questions(engine, 1)
    (job_id,) = enqueue(engine, 1).job_ids
    c = _claim(engine, [job_id]).claimed[0]
    real = results.finish
    outages = iter([True] * 6 + [False])

    def flaky(*a: Any, **k: Any) -> Any:
        if next(outages):
            raise sa_exc.OperationalError("UPDATE", {}, Exception("server closed the connection"))
        return real(*a, **k)

    monkeypatch.setattr(results, "finish", flaky)
    slept: list[float] = []
    statuses = results.store(
        engine,
        [Success(job_id, c.lease_token, generation())],
        max_attempts=3,
        patience=60,
        sleep=slept.append,
    )
    # Doubling, capped low so that answers are stored within seconds of the database's return.
    assert statuses == {job_id: JobStatus.done} and slept == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_results_give_up_after_the_patience(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*a: Any, **k: Any) -> Any:
        raise sa_exc.OperationalError("UPDATE", {}, Exception("could not connect"))

    monkeypatch.setattr(results, "finish", down)
    with pytest.raises(results.GaveUp, match="could not connect"):
        results.store(engine, [], max_attempts=3, patience=2.0, sleep=lambda s: None)


def test_one_unstorable_row_does_not_fail_its_batch(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_questions(engine, 3)
    ids = enqueue(engine, 3).job_ids
    claimed = {c.job_id: c for c in _claim(engine, ids).claimed}
    bad = ids[1]
    real = results.finish

    def refuses_one(session: Any, batch: Any, **k: Any) -> Any:
        if any(isinstance(r, Success) and r.job_id == bad for r in batch):
            raise sa_exc.DataError("INSERT", {}, Exception("value the backend refuses"))
        return real(session, batch, **k)

    monkeypatch.setattr(results, "finish", refuses_one)
    batch = [Success(j, claimed[j].lease_token, generation()) for j in ids]
    statuses = results.store(engine, batch, max_attempts=3, patience=5)
    assert statuses == {ids[0]: JobStatus.done, bad: JobStatus.queued, ids[2]: JobStatus.done}
    failed = _job(engine, bad)
    assert failed.last_error is not None and "could not be stored" in failed.last_error


def test_a_nul_in_the_reply_is_stored_replaced_and_noted(engine: Engine) -> None:
    from distill.jobs.generation import generation_values
    from schemas.teacher import TeacherResult

    add_questions(engine, 1)
    (job_id,) = enqueue(engine, 1).job_ids
    c = _claim(engine, [job_id]).claimed[0]
    reply = TeacherResult(
        text="chain with a \x00 in it\n</think>\n\nThe answer is B.",
        finish_reason="stop",
        latency_s=0.1,
        model="test-teacher",
    )
    values = generation_values(c, reply)
    with session_scope(engine) as s:
        assert finish(s, [Success(job_id, c.lease_token, values)], max_attempts=3) == {
            job_id: JobStatus.done
        }
    with session_scope(engine) as s:
        stored = s.scalars(select(Generation)).one()
        assert "\x00" not in stored.raw_text and "\ufffd" in stored.raw_text
        assert stored.notes == [
            "U+0000 replaced by U+FFFD in raw_text",
            "U+0000 replaced by U+FFFD in reasoning",
        ]


# --- the outage gate ----------------------------------------------------------------------------


def _down() -> TeacherError:
    return TeacherError("cannot reach the teacher", retryable=True)


def test_the_gate_closes_when_the_probe_fails_and_opens_when_it_answers() -> None:
    async def scenario() -> list[str]:
        up = False
        seen: list[str] = []

        async def probe() -> bool:
            seen.append("probe")
            return up

        gate = OutageGate(probe, probe_min=0.01, probe_max=0.02)
        assert await gate.is_outage(_down()) and gate.paused and gate.paused_since
        up = True
        await asyncio.wait_for(gate.wait_open(), 5)
        assert not gate.paused and gate.paused_since is None
        await gate.aclose()
        return seen

    assert len(asyncio.run(scenario())) >= 2


def test_a_job_that_fails_alone_is_not_an_outage() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        async def probe() -> bool:
            return True

        gate = OutageGate(probe)
        alone = await gate.is_outage(_down())
        refused = await gate.is_outage(TeacherError("HTTP 400: bad", retryable=False, status=400))
        gate.success()
        for _ in range(CONSECUTIVE - 1):
            await gate.is_outage(_down())
        everyone = await gate.is_outage(_down())  # 5 in a row, no success: 5xx for everyone
        await gate.aclose()
        return alone, refused, everyone

    assert asyncio.run(scenario()) == (False, False, True)


_TAKE_AND_DIE = """
import os, sys
from kombu import Connection
with Connection(sys.argv[1]) as conn:
    channel = conn.default_channel
    for _ in range(int(sys.argv[3])):
        assert channel.basic_get(sys.argv[2], no_ack=False) is not None
    os._exit(0)  # dies holding them: no ack, no restore on close
"""


def test_messages_a_dead_worker_took_and_never_claimed_are_given_back(
    engine: Engine, broker: redis.Redis
) -> None:
    """kombu would hand them out again after the visibility timeout (hours); the reconciler
    does it a lease later, for queued jobs only, and leaves a countdown that is not due."""
    import subprocess
    import sys

    add_questions(engine, 3)
    waiting, done, later = enqueue(engine, 3).job_ids
    url = _url(broker)
    with session_scope(engine) as s:
        routes = publish.job_routes(s, [waiting, done])
        delayed = publish.job_routes(s, [later])
        s.execute(update(Job).where(Job.id == done).values(status=JobStatus.done))
    publish.publish(routes, broker_url=url, per_message=1)
    publish.publish(delayed, broker_url=url, countdown=3600)
    took = subprocess.run(
        [sys.executable, "-c", _TAKE_AND_DIE, url, TEACHER_QUEUE, "3"], check=False, timeout=60
    )
    assert took.returncode == 0 and broker.llen(TEACHER_QUEUE) == 0
    held = marks.held_too_long(url, task_names=publish.TASK_NAMES, older_than=0)
    assert sorted(held.values()) == [[waiting], [done]]  # the countdown is not due for an hour
    assert reconcile.held_by_the_dead(engine, broker_url=url, lease_seconds=3600) == 0  # too soon
    assert reconcile.held_by_the_dead(engine, broker_url=url, lease_seconds=0) == 1
    assert queued_job_ids(broker, TEACHER_QUEUE) == [waiting]
    assert reconcile.held_by_the_dead(engine, broker_url=url, lease_seconds=0) == 0  # once
