"""End to end: real `distill worker` processes, real Redis, the configured database, a fake
OpenAI-compatible teacher over HTTP. Every job must reach the right final state and outcome."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from distill.choices import LETTERS
from distill.cli import app
from distill.config import Settings
from distill.db import session_scope
from distill.models import Generation, Job, JobStatus, Outcome
from distill.teacher.grading import grade
from distill.teacher.parsing import parse_completion
from tests.support.factories import add_questions
from tests.support.fake_openai import FakeOpenAIServer, fake_reply
from tests.support.workers import Worker, count, redis_db, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, object]]:
    with redis_db() as broker, FakeOpenAIServer("test-teacher", latency=0.05) as teacher:
        env = {
            "DISTILL_DATABASE_URL": settings.database_url,
            "DISTILL_BROKER_URL": broker,
            "DISTILL_TEACHER_URL": teacher.url,
            "DISTILL_TEACHER_MODEL": "test-teacher",
            "DISTILL_MAX_TOKENS": "300",
            "DISTILL_RETRY_BACKOFF_MAX": "0.5",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        from distill.config import get_settings

        get_settings.cache_clear()
        workers: list[Worker] = []

        def start(concurrency: int = 16, **extra: str) -> Worker:
            w = Worker({**env, **extra}, tmp_path / f"worker{len(workers)}.log", concurrency)
            workers.append(w)
            return w

        yield {"env": env, "start": start, "teacher": teacher}
        for w in workers:
            w.stop()


def _expected(prompt: str, max_tokens: int, gold: str, n_options: int) -> Outcome:
    reply = fake_reply(prompt, max_tokens)
    parsed = parse_completion(reply.text, n_options=n_options)
    return grade(parsed, finish_reason=reply.finish_reason, gold_letter=gold)


def test_sixty_jobs_reach_the_right_final_state(stack: dict, engine: Engine) -> None:  # type: ignore[type-arg]
    add_questions(engine, 40, subjects=("math", "law"))
    worker = stack["start"](concurrency=16)
    result = CliRunner().invoke(app, ["enqueue", "--n", "30", "--samples", "2", "--wait"])
    assert result.exit_code == 0, result.output + worker.tail()
    assert "enqueued 60 job(s) for 30 question(s)" in result.output
    assert count(engine, JobStatus.done) == 60, worker.tail()
    outcomes: Counter[Outcome] = Counter()
    with session_scope(engine) as s:
        for job, gen in s.execute(select(Job, Generation).join(Generation)).all():
            q = job.question
            gold = LETTERS[job.choice_order.index(q.answer_index)]
            prompt = gen.request["messages"][0]["content"]
            assert gen.outcome == _expected(prompt, job.max_tokens, gold, len(q.choices))
            assert gen.request["params"]["max_tokens"] == 300 and job.attempts == 1
            outcomes[gen.outcome] += 1
    assert {Outcome.correct, Outcome.incorrect, Outcome.truncated} <= set(outcomes)
    status = CliRunner().invoke(app, ["status", "--json"])
    import json

    report = json.loads(status.output)
    assert report["jobs"]["done"] == 60 and sum(report["outcomes"].values()) == 60
    # A duplicate of every message changes nothing.
    from distill.jobs import publish

    with session_scope(engine) as s:
        routes = publish.job_routes(s, list(range(1, 61)))
    publish.publish(routes, broker_url=stack["env"]["DISTILL_BROKER_URL"])
    time.sleep(3)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count(Generation.id))) == 60


def test_killed_worker_jobs_finish_on_a_restarted_worker(stack: dict, engine: Engine) -> None:  # type: ignore[type-arg]
    stack["teacher"].latency = 2.0
    add_questions(engine, 12)
    fast_lease = {"DISTILL_LEASE_SECONDS": "4", "DISTILL_VISIBILITY_TIMEOUT": "6"}
    first = stack["start"](concurrency=8, **fast_lease)
    assert CliRunner().invoke(app, ["enqueue", "--n", "12"]).exit_code == 0
    wait_until(
        lambda: count(engine, JobStatus.running) >= 4,
        timeout=60,
        what="jobs running",
        on_fail=first.tail,
    )
    first.kill()
    second = stack["start"](concurrency=8, **fast_lease)
    wait_until(
        lambda: count(engine, JobStatus.done, JobStatus.failed) == 12,
        timeout=120,
        what="every job final after the restart",
        on_fail=second.tail,
    )
    with session_scope(engine) as s:
        jobs = s.scalars(select(Job)).all()
        assert {j.status for j in jobs} == {JobStatus.done}
        assert max(j.attempts for j in jobs) == 2  # the killed worker's jobs were re-claimed
        per_job = Counter(s.scalars(select(Generation.job_id)))
        assert set(per_job.values()) == {1} and len(per_job) == 12


def test_teacher_outage_is_retried_with_backoff_then_succeeds(stack: dict, engine: Engine) -> None:  # type: ignore[type-arg]
    from tests.support.fake_openai import Error

    add_questions(engine, 2)
    # Six 503s. Whether the outage gate's one-token probe lands on one of them (the gate closes:
    # the jobs wait, uncharged, and are sent again) or after them (a blip: the failed claim is
    # charged and the job comes back through Celery's retry) depends on timing; either way both
    # jobs end done, within their attempts.
    stack["teacher"].script(*[Error(503, "overloaded")] * 6)
    worker = stack["start"](concurrency=4)
    assert CliRunner().invoke(app, ["enqueue", "--n", "2"]).exit_code == 0
    wait_until(
        lambda: count(engine, JobStatus.done, JobStatus.failed) == 2,
        timeout=120,
        what="final",
        on_fail=worker.tail,
    )
    assert count(engine, JobStatus.done) == 2
    asked = [r for r in stack["teacher"].requests if r["max_tokens"] != 1]  # not the probes
    assert len(asked) <= 8  # at most the storm, then one answer each
    with session_scope(engine) as s:
        assert set(s.scalars(select(Job.attempts))) <= {1, 2}


def test_256_requests_in_flight_from_one_worker_in_little_memory(
    stack: dict, engine: Engine
) -> None:  # type: ignore[type-arg]
    stack["teacher"].latency = 4.0
    add_questions(engine, 256)
    worker = stack["start"](concurrency=256)
    started = time.monotonic()
    assert CliRunner().invoke(app, ["enqueue", "--n", "256"]).exit_code == 0
    wait_until(
        lambda: count(engine, JobStatus.done) == 256,
        timeout=120,
        what="256 jobs",
        on_fail=worker.tail,
    )
    elapsed = time.monotonic() - started
    # One at a time would take 256 × 4 s; in flight together they take a few latencies.
    assert elapsed < 40, elapsed
    rss = worker.peak_rss_mb()
    print(f"worker peak RSS with 256 in flight: {rss:.0f} MB; {elapsed:.1f}s")  # noqa: T201
    assert rss < 1024, f"peak RSS {rss:.0f} MB"
