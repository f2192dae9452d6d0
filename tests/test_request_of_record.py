"""The job row is the request of record: what was decided at enqueue (model, sampling, budget,
prompt version) is what the worker sends and what the generation stores, whatever the worker's
own environment says; a job for another model or prompt version is never sent, never charged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, select, update

from distill.config import Settings
from distill.db import session_scope
from distill.jobs.enqueue import create_run
from distill.jobs.publish import LEGACY_QUEUE, SINGLE_TASK_NAME, producer_app, queue_name
from distill.jobs.runner import Runner
from distill.models import Generation, Job, JobStatus
from distill.prompts import PROMPT_VERSION
from distill.teacher.client import OpenAITeacher, TeacherError
from tests.support.factories import add_questions
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.fake_teacher import FakeTeacher, answer
from tests.support.messages import job_ids
from tests.support.workers import Worker, redis_db, wait_until


def _enqueue(
    engine: Engine, n: int, *, model: str = "test-teacher", version: str = PROMPT_VERSION
) -> list[int]:
    with session_scope(engine) as s:
        plan = create_run(
            s,
            n=n,
            samples=1,
            teacher_model=model,
            params={"temperature": 0.2, "top_p": 0.9},
            max_tokens=123,
            prompt_version=version,
        )
    return plan.job_ids


@pytest.fixture
def worker_env(settings: Settings) -> Settings:
    # The worker's own environment disagrees with the run on every sampling setting.
    return settings.model_copy(update={"temperature": 0.9, "top_p": 0.5, "max_tokens": 4096})


@pytest.fixture
def make_runner(engine: Engine) -> Iterator:  # type: ignore[type-arg]
    runners: list[Runner] = []

    def make(settings: Settings, teacher: object) -> Runner:
        runner = Runner(settings=settings, engine=engine, teacher_factory=lambda: teacher)  # type: ignore[arg-type,return-value]
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.close()


def test_a_job_is_sent_with_the_runs_sampling_not_the_workers(
    engine: Engine,
    worker_env: Settings,
    make_runner,  # type: ignore[no-untyped-def]
) -> None:
    add_questions(engine, 2)
    ids = _enqueue(engine, 2)
    teacher = FakeTeacher(lambda p, m: answer("A"))
    runner = make_runner(worker_env, teacher)
    assert {runner.run(i).action for i in ids} == {"done"}
    assert {(r.model, r.temperature, r.top_p, r.max_tokens) for r in teacher.requests} == {
        ("test-teacher", 0.2, 0.9, 123)
    }
    with session_scope(engine) as s:
        stored = [g.request for g in s.scalars(select(Generation))]
    assert [r["params"] for r in stored] == [
        {"temperature": 0.2, "top_p": 0.9, "max_tokens": 123}
    ] * 2
    assert {r["model"] for r in stored} == {"test-teacher"}
    # What is stored is what was sent, byte for byte.
    assert [r.stored() for r in teacher.requests] == stored


def test_over_http_the_body_is_the_request_of_record(
    engine: Engine,
    worker_env: Settings,
    make_runner,  # type: ignore[no-untyped-def]
) -> None:
    add_questions(engine, 1)
    (job_id,) = _enqueue(engine, 1)
    with FakeOpenAIServer("test-teacher") as server:
        env = worker_env.model_copy(update={"teacher_url": server.url})
        runner = make_runner(env, OpenAITeacher.from_settings(env))
        assert runner.run(job_id).action == "done"
        [body] = server.requests
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.2, 0.9, 123)
    with session_scope(engine) as s:
        (generation,) = s.scalars(select(Generation))
    assert generation.request == {
        "model": body["model"],
        "messages": body["messages"],
        "params": {"temperature": 0.2, "top_p": 0.9, "max_tokens": 123},
    }


@pytest.mark.parametrize(
    ("model", "version"), [("model-Y", PROMPT_VERSION), ("test-teacher", "mcq-r1-v99")]
)
def test_a_job_for_another_model_or_prompt_is_never_sent_nor_charged(
    engine: Engine,
    worker_env: Settings,
    make_runner,
    model: str,
    version: str,  # type: ignore[no-untyped-def]
) -> None:
    add_questions(engine, 1)
    (job_id,) = _enqueue(engine, 1, model=model, version=version)
    teacher = FakeTeacher(lambda p, m: answer("A"))
    outcome = make_runner(worker_env, teacher).run(job_id)
    assert outcome.action == "reroute" and outcome.route == (model, version)
    assert teacher.calls == []
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and (job.status, job.attempts) == (JobStatus.queued, 0)


def test_an_endpoint_that_does_not_serve_the_model_hands_the_job_back_uncharged(
    engine: Engine,
    worker_env: Settings,
    make_runner,  # type: ignore[no-untyped-def]
) -> None:
    add_questions(engine, 1)
    (job_id,) = _enqueue(engine, 1)
    missing = TeacherError(
        "HTTP 404: The model `test-teacher` does not exist.", retryable=False, status=404
    )
    outcome = make_runner(worker_env, FakeTeacher(lambda p, m: missing)).run(job_id)
    assert outcome.action == "requeue" and outcome.delay > 0
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and (job.status, job.attempts) == (JobStatus.queued, 0)
        assert "does not exist" in (job.last_error or "")


@pytest.mark.e2e
def test_a_worker_for_model_x_routes_a_model_y_job_to_its_own_queue(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """Through Celery: a model-Y job on the queue every pre-routing message went to (as after an
    upgrade) reaches a model-X worker, which neither sends nor charges it, and moves it to the
    model-Y queue."""
    add_questions(engine, 2)
    y_job, x_job = _enqueue(engine, 1, model="model-Y"), _enqueue(engine, 1, model="model-X")
    with redis_db() as broker_url, FakeOpenAIServer("model-X") as server:
        app = producer_app(broker_url)
        for job_id in (*y_job, *x_job):
            app.send_task(SINGLE_TASK_NAME, args=[job_id], queue=LEGACY_QUEUE)
        env = {
            "DISTILL_DATABASE_URL": settings.database_url,
            "DISTILL_BROKER_URL": broker_url,
            "DISTILL_TEACHER_URL": server.url,
            "DISTILL_TEACHER_MODEL": "model-X",
            "DISTILL_TEMPERATURE": "0.9",
        }
        worker = Worker(env, tmp_path / "worker.log", concurrency=4)
        client = redis.Redis.from_url(broker_url)
        y_queue = queue_name(("model-Y", PROMPT_VERSION))
        try:
            wait_until(
                lambda: client.llen(y_queue) == 1 and _status(engine, x_job[0]) == JobStatus.done,
                timeout=60,
                what="the model-Y job routed, the model-X job done",
                on_fail=worker.tail,
            )
        finally:
            worker.stop()
        (message,) = client.lrange(y_queue, 0, -1)
        assert job_ids(message) == [y_job[0]]
        assert [r["model"] for r in server.requests] == ["model-X"]
        assert server.requests[0]["temperature"] == 0.2  # the run's, not the worker's 0.9
        client.close()
    with session_scope(engine) as s:
        job = s.get(Job, y_job[0])
        assert job is not None and (job.status, job.attempts) == (JobStatus.queued, 0)


def _status(engine: Engine, job_id: int) -> JobStatus:
    with session_scope(engine) as s:
        status = s.scalar(select(Job.status).where(Job.id == job_id))
        assert status is not None
        return status


def test_status_shows_queued_jobs_by_route(engine: Engine) -> None:
    from distill.jobs.status import collect

    add_questions(engine, 3)
    _enqueue(engine, 1, model="model-Y")
    _enqueue(engine, 2)
    with session_scope(engine) as s:
        s.execute(update(Job).where(Job.teacher_model == "test-teacher").values(status="queued"))
        report = collect(s)
    assert report.queued_by_route == {
        f"model-Y / {PROMPT_VERSION}": 1,
        f"test-teacher / {PROMPT_VERSION}": 2,
    }
