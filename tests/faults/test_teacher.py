"""The teacher goes away mid-run (a vLLM restart takes minutes for a 32B model), or hangs."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from distill.cli import app
from distill.db import session_scope
from distill.models import Job, JobStatus, Worker
from tests.faults.conftest import FaultStack
from tests.support.factories import add_questions
from tests.support.fake_openai import Delay
from tests.support.workers import count, wait_until

pytestmark = pytest.mark.faults


def _paused_workers(engine: Engine) -> int:
    with session_scope(engine) as s:
        return len(s.scalars(select(Worker).where(Worker.paused_since.is_not(None))).all())


def test_a_teacher_stopped_for_two_minutes_pauses_the_run_and_fails_nothing(
    stack: FaultStack, engine: Engine
) -> None:
    """Connection refused for 120 s: the workers pause (status shows it), charge no job, and
    resume on their own when the teacher is back on its port."""
    jobs = 120
    stack.teacher.latency = 2.0  # the run lasts 30 s: the teacher goes while it is busy
    add_questions(engine, jobs)
    stack.start_worker(concurrency=8)
    stack.enqueue(jobs)
    wait_until(lambda: count(engine, JobStatus.done) >= 20, timeout=120, what="20 done")
    port = stack.stop_teacher()
    wait_until(lambda: _paused_workers(engine) == 1, timeout=60, what="the worker to pause")
    shown = json.loads(CliRunner().invoke(app, ["status", "--json"]).output)
    assert [w["state"] for w in shown["workers"]] == ["paused"], shown["workers"]
    time.sleep(120)
    assert count(engine, JobStatus.failed) == 0
    done_during_outage = count(engine, JobStatus.done)
    stack.start_teacher(port, latency=0.5)
    back = time.monotonic()
    wait_until(
        lambda: count(engine, JobStatus.done) > done_during_outage,
        timeout=120,
        what="the run to resume",
        on_fail=stack.tails,
    )
    resumed = time.monotonic() - back
    stack.wait_final(engine, jobs, timeout=180)
    assert stack.check(engine) == {JobStatus.done: jobs}
    wait_until(lambda: _paused_workers(engine) == 0, timeout=60, what="the pause to be cleared")
    with session_scope(engine) as s:
        assert set(s.scalars(select(Job.attempts))) == {1}  # the outage cost no attempt
    stack.record("teacher stopped 120 s", resumed_after_back_s=round(resumed, 1))


def test_a_teacher_that_never_answers_is_cut_at_the_request_timeout(
    stack: FaultStack, engine: Engine
) -> None:
    """It accepts the connection and never answers: each request is abandoned at the timeout
    and sent again; the run completes."""
    hangs = 4
    stack.teacher.script([Delay(3600.0)] * hangs)
    add_questions(engine, 10)
    stack.start_worker(concurrency=8, DISTILL_REQUEST_TIMEOUT="3")
    started = time.monotonic()
    stack.enqueue(10)
    stack.wait_final(engine, 10, timeout=120)
    elapsed = time.monotonic() - started
    assert stack.check(engine) == {JobStatus.done: 10}
    assert stack.teacher.calls >= 10 + hangs
    assert elapsed < 60, f"{elapsed:.0f}s: the 3 s timeout did not hold"
    stack.record("hanging teacher, 3 s timeout", run_s=round(elapsed, 1))
