"""Workers that die, crash, are stopped, or get the same message twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from sqlalchemy import Engine, select

from distill.db import session_scope
from distill.jobs.publish import (
    SINGLE_TASK_NAME,
    TASK_NAME,
    job_routes,
    producer_app,
    publish,
    queue_name,
)
from distill.models import Job, JobStatus, Question
from distill.prompts import PROMPT_VERSION
from tests.faults.conftest import FaultStack
from tests.support.factories import add_questions
from tests.support.fake_openai import Error
from tests.support.workers import count, wait_until

pytestmark = pytest.mark.faults


def _ids(engine: Engine) -> list[int]:
    with session_scope(engine) as s:
        return list(s.scalars(select(Job.id).order_by(Job.id)))


def test_sigkill_with_requests_in_flight_recovers_within_two_minutes(
    stack: FaultStack, engine: Engine
) -> None:
    """Default settings but the teacher's URL: the dead worker's 40 jobs are claimed again by
    another worker a lease (60 s) plus a reconcile pass later, not a visibility timeout later."""
    stack.teacher.latency = 20.0
    add_questions(engine, 40)
    first = stack.start_worker(concurrency=64)
    stack.enqueue(40)
    wait_until(lambda: count(engine, JobStatus.running) >= 32, timeout=60, what="32 in flight")
    first.kill()
    killed_at = time.monotonic()
    with session_scope(engine) as s:
        orphans = set(s.scalars(select(Job.id).where(Job.status == JobStatus.running)))
    assert len(orphans) >= 32
    stack.start_worker(concurrency=64)

    def reclaimed() -> bool:
        with session_scope(engine) as s:
            attempts = s.scalars(select(Job.attempts).where(Job.id.in_(orphans))).all()
        return all(a >= 2 for a in attempts)

    wait_until(reclaimed, timeout=120, what="the dead worker's jobs claimed again")
    recovered = time.monotonic() - killed_at
    stack.wait_final(engine, 40, timeout=120)
    assert stack.check(engine) == {JobStatus.done: 40}
    assert recovered < 120, f"recovery took {recovered:.0f}s"
    stack.record("sigkill", in_flight=len(orphans), reclaimed_after_s=round(recovered, 1))


def test_a_poison_job_fails_after_its_attempts_and_the_run_completes(
    stack: FaultStack, engine: Engine
) -> None:
    """Its request kills the worker every time (a supervisor restarts workers, as compose
    does): after DISTILL_MAX_ATTEMPTS leases it is failed with the reason; the rest finish."""
    fast = {"DISTILL_LEASE_SECONDS": "6", "DISTILL_RECONCILE_SECONDS": "2"}
    add_questions(engine, 12)
    with session_scope(engine) as s:
        question = s.scalars(select(Question).order_by(Question.id)).first()
        assert question is not None
        question.question = "POISON: " + question.question
    live: list[Any] = [stack.start_worker(concurrency=8, **fast)]

    def kill_on_poison(prompt: str) -> None:
        if "POISON" in prompt:
            os.killpg(live[-1].proc.pid, signal.SIGKILL)
        return None

    stack.teacher.on_request = kill_on_poison  # type: ignore[assignment]
    stack.enqueue(12)
    deadline = time.monotonic() + 240
    while count(engine, JobStatus.done, JobStatus.failed) < 12 and time.monotonic() < deadline:
        if live[-1].proc.poll() is not None:  # restart it, as compose's restart policy does
            live.append(stack.start_worker(concurrency=8, **fast))
        time.sleep(0.3)
    statuses = stack.check(engine)
    assert statuses == {JobStatus.done: 11, JobStatus.failed: 1}
    with session_scope(engine) as s:
        failed = s.scalars(select(Job).where(Job.status == JobStatus.failed)).one()
        assert failed.attempts == 3
        assert failed.last_error == "lease expired after 3 attempts (worker lost or stalled)"
    assert len(live) >= 4  # it killed three workers


def test_a_crash_after_the_commit_before_the_ack_stores_one_result(
    stack: FaultStack, engine: Engine
) -> None:
    fast = {"DISTILL_VISIBILITY_TIMEOUT": "5"}
    add_questions(engine, 4)
    crashing = stack.start_worker(concurrency=1, module="tests.support.crash_after_commit", **fast)
    stack.enqueue(4)
    wait_until(lambda: crashing.proc.poll() is not None, timeout=60, what="the crash")
    # The four jobs travel in one message: all committed, the message never acknowledged.
    assert count(engine, JobStatus.done) == 4
    stack.start_worker(concurrency=4, **fast)
    stack.wait_final(engine, 4, timeout=90)
    time.sleep(8)  # the unacknowledged message comes back after the visibility timeout
    assert stack.check(engine) == {JobStatus.done: 4}
    assert len([r for r in stack.teacher.requests if r.get("max_tokens") != 1]) == 4


def test_duplicate_and_stale_messages_cost_no_teacher_call(
    stack: FaultStack, engine: Engine
) -> None:
    stack.teacher.latency = 1.0
    add_questions(engine, 20)
    stack.start_worker(concurrency=16)
    stack.enqueue(20)
    with session_scope(engine) as s:
        routes = job_routes(s, _ids(engine))
    publish(routes, broker_url=stack.redis.url)  # every message again, at once
    stack.wait_final(engine, 20, timeout=90)
    publish(routes, broker_url=stack.redis.url)  # and again, for finished jobs
    time.sleep(5)
    assert stack.check(engine, calls_cap=1) == {JobStatus.done: 20}


def test_a_malformed_message_is_dropped_without_delaying_a_job(
    stack: FaultStack, engine: Engine
) -> None:
    add_questions(engine, 2)
    app = producer_app(stack.redis.url)
    queue = queue_name(("test-teacher", PROMPT_VERSION))
    app.send_task(TASK_NAME, args=["not-an-id"], queue=queue)
    app.send_task(TASK_NAME, args=[[1, "two"]], queue=queue)
    app.send_task(SINGLE_TASK_NAME, args=["not-an-id"], queue=queue)  # the older message shape
    stack.start_worker(concurrency=4)
    stack.enqueue(2)
    elapsed = stack.wait_final(engine, 2, timeout=60)
    assert elapsed < 30 and stack.check(engine) == {JobStatus.done: 2}
    logs = stack.logs()
    assert "dropped a malformed message: 'not-an-id' is not a list of job ids" in logs
    assert "dropped a malformed message: [1, 'two'] is not a list of job ids" in logs
    assert "dropped a malformed message: job id 'not-an-id' is not an integer" in logs


@pytest.mark.parametrize("signals", [["SIGTERM"], ["SIGINT"], ["SIGINT", "SIGINT"]])
def test_stopping_hands_back_and_exits_never_hangs(
    stack: FaultStack, engine: Engine, signals: list[str]
) -> None:
    """SIGTERM (`docker compose stop`), Ctrl-C, Ctrl-C twice: the worker exits within its grace,
    what it did not finish is queued again, uncharged, with its message kept; another worker
    finishes the run."""
    stack.teacher.latency = 60.0  # longer than the grace: in flight when the signal comes
    grace = {"DISTILL_SHUTDOWN_GRACE": "3"}
    add_questions(engine, 10)
    worker = stack.start_worker(concurrency=10, **grace)
    stack.enqueue(10)
    wait_until(lambda: count(engine, JobStatus.running) == 10, timeout=60, what="10 in flight")
    started = time.monotonic()
    for name in signals:
        os.killpg(worker.proc.pid, getattr(signal, name))
        time.sleep(0.5)
    worker.proc.wait(timeout=40)
    assert time.monotonic() - started < 30, "the worker hung on shutdown"
    with session_scope(engine) as s:
        jobs = s.scalars(select(Job)).all()
        assert {(j.status, j.attempts) for j in jobs} == {(JobStatus.queued, 0)}
    stack.teacher.latency = 0.1
    stack.start_worker(concurrency=10)
    stack.wait_final(engine, 10, timeout=90)
    assert stack.check(engine) == {JobStatus.done: 10}


def test_ctrl_c_during_enqueue_leaves_no_job_without_its_message(
    stack: FaultStack, engine: Engine
) -> None:
    add_questions(engine, 3000)
    process = subprocess.Popen(
        [sys.executable, "-m", "distill", "enqueue", "--n", "3000"],
        env={**os.environ, **stack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def some_published() -> bool:
        with session_scope(engine) as s:
            return (
                s.scalar(select(Job.id).where(Job.published_at.is_not(None)).limit(1)) is not None
            )

    wait_until(some_published, timeout=120, what="publishing under way")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    with session_scope(engine) as s:
        saved = s.scalars(select(Job.id)).all()
        unsent = s.scalars(select(Job.id).where(Job.published_at.is_(None))).all()
    assert len(saved) == 3000
    if unsent:  # interrupted in time: it says so, and the reconciler sends them
        assert "not all of them sent yet" in err and "reconcile" in err, err
        assert process.returncode == 1
    stack.teacher.latency = 0.0
    stack.start_worker(concurrency=64, DISTILL_RECONCILE_SECONDS="2")
    stack.wait_final(engine, 3000, timeout=300)
    assert stack.check(engine) == {JobStatus.done: 3000}
    stack.record("ctrl-c during enqueue", left_to_the_reconciler=len(unsent))


def test_a_job_failing_alone_still_uses_its_attempts(stack: FaultStack, engine: Engine) -> None:
    add_questions(engine, 6)
    with session_scope(engine) as s:
        question = s.scalars(select(Question).order_by(Question.id)).first()
        assert question is not None
        question.question = "BROKEN: " + question.question

    def broken(prompt: str) -> Error | None:
        return Error(500, "internal error for this prompt") if "BROKEN" in prompt else None

    stack.teacher.on_request = broken  # type: ignore[assignment]
    stack.start_worker(concurrency=8, DISTILL_RETRY_BACKOFF_MAX="0.1")
    stack.enqueue(6)
    stack.wait_final(engine, 6, timeout=180)
    assert stack.check(engine) == {JobStatus.done: 5, JobStatus.failed: 1}
