"""The broker restarted (with its append-only file) or emptied mid-run: the run completes with
no command typed."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine

from distill.models import JobStatus
from tests.faults.conftest import FaultStack
from tests.support.factories import add_questions
from tests.support.workers import count, wait_until

pytestmark = pytest.mark.faults

JOBS = 200


def _mid_run(stack: FaultStack, engine: Engine) -> None:
    stack.teacher.latency = 0.5
    add_questions(engine, JOBS)
    stack.start_worker(concurrency=16)
    stack.start_worker(concurrency=16)
    stack.enqueue(JOBS)
    wait_until(
        lambda: count(engine, JobStatus.done) >= 30,
        timeout=120,
        what="30 done",
        on_fail=stack.tails,
    )


def test_a_restarted_broker_loses_nothing(stack: FaultStack, engine: Engine) -> None:
    _mid_run(stack, engine)
    stack.redis.restart(down_for=5.0)
    back = time.monotonic()
    stack.wait_final(engine, JOBS, timeout=300)
    assert stack.check(engine) == {JobStatus.done: JOBS}
    stack.record("redis restart (5 s down)", rest_of_run_s=round(time.monotonic() - back, 1))


def test_a_flushed_broker_is_noticed_and_the_queue_sent_again(
    stack: FaultStack, engine: Engine
) -> None:
    """Every message is gone; the reconciler finds the broker's mark gone and re-sends what is
    queued (default reconcile interval); running jobs finish on their leases."""
    _mid_run(stack, engine)
    stack.redis.flush()
    flushed = time.monotonic()
    queued_then = count(engine, JobStatus.queued)
    assert queued_then > 0  # there was something to lose
    stack.wait_final(engine, JOBS, timeout=300)
    assert stack.check(engine) == {JobStatus.done: JOBS}
    stack.record(
        "redis flushed", queued_when_flushed=queued_then, rest_of_run_s=time.monotonic() - flushed
    )
