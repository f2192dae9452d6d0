"""The worker engine with an in-process fake teacher: concurrency, batching, outcomes, errors."""

from __future__ import annotations

import concurrent.futures
import os
import re
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy import exc as sa_exc

from distill.config import Settings
from distill.db import session_scope
from distill.jobs.runner import Runner
from distill.models import Generation, Job, JobStatus, Outcome
from distill.teacher.client import TeacherError
from tests.support.factories import add_questions, enqueue
from tests.support.fake_teacher import FakeTeacher, answer, truncated


def _gold(prompt: str) -> str:
    # The fixtures' options read "option X of i": X is the original letter; the gold option's
    # original letter is LETTERS[i % 4]. Find which presented letter carries it.
    i = int(re.search(r"Question number (\d+)", prompt).group(1))  # type: ignore[union-attr]
    gold_original = "ABCD"[i % 4]
    for line in prompt.splitlines():
        m = re.match(rf"([A-J])\. option {gold_original} of {i}$", line)
        if m:
            return m.group(1)
    raise AssertionError(prompt)


@pytest.fixture
def make_runner(settings: Settings, engine: Engine) -> Iterator:  # type: ignore[type-arg]
    runners: list[Runner] = []

    def make(teacher: FakeTeacher, **overrides: object) -> Runner:
        s = Settings.model_validate({**settings.model_dump(), **overrides})
        runner = Runner(settings=s, engine=engine, teacher_factory=lambda: teacher)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.close()


def _run_all(runner: Runner, ids: list[int]):  # type: ignore[no-untyped-def]
    futures = [runner.submit(i) for i in ids]
    return [f.result(timeout=60) for f in futures]


def test_many_requests_in_flight_and_outcomes_stored(make_runner, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    add_questions(engine, 200)
    ids = enqueue(engine, 200).job_ids

    def script(prompt: str, max_tokens: int) -> object:
        i = int(re.search(r"Question number (\d+)", prompt).group(1))  # type: ignore[union-attr]
        gold = _gold(prompt)
        wrong = "A" if gold != "A" else "B"
        return [answer(gold), answer(wrong), truncated()][i % 3]

    teacher = FakeTeacher(script, delay=0.2)  # type: ignore[arg-type]
    runner = make_runner(teacher, concurrency=64)
    outcomes = _run_all(runner, ids)
    assert {o.action for o in outcomes} == {"done"}
    assert len(teacher.calls) == 200
    # Requests overlapped: the semaphore allows 64 and the batches feed it.
    assert teacher.peak_in_flight >= 32
    assert teacher.peak_in_flight <= 64
    with session_scope(engine) as s:
        rows = s.execute(select(Generation.outcome, Generation.request, Job.status).join(Job)).all()
    assert len(rows) == 200 and {r[2] for r in rows} == {JobStatus.done}
    counts = {o: sum(1 for r in rows if r[0] == o) for o in Outcome}
    assert counts[Outcome.correct] == 67 and counts[Outcome.incorrect] == 67
    assert counts[Outcome.truncated] == 66
    request = rows[0][1]
    assert request["params"] == {"temperature": 0.6, "top_p": 0.95, "max_tokens": 256}
    assert request["messages"][0]["role"] == "user"


def test_stored_generation_maps_letter_back_to_the_original_option(
    make_runner, engine: Engine
) -> None:  # type: ignore[no-untyped-def]
    add_questions(engine, 8)
    ids = enqueue(engine, 8).job_ids
    runner = make_runner(FakeTeacher(lambda p, m: answer(_gold(p))))
    _run_all(runner, ids)
    with session_scope(engine) as s:
        for gen, job in s.execute(select(Generation, Job).join(Job)).all():
            assert gen.outcome == Outcome.correct
            assert gen.predicted_index == job.question.answer_index
            assert gen.reasoning == "Let me think."


def test_duplicate_submissions_call_the_teacher_once(make_runner, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    add_questions(engine, 1)
    (job_id,) = enqueue(engine, 1).job_ids
    teacher = FakeTeacher(lambda p, m: answer("A"), delay=0.1)
    runner = make_runner(teacher)
    outcomes = _run_all(runner, [job_id, job_id])
    assert len(teacher.calls) == 1
    assert {o.action for o in outcomes} <= {"done", "retry_later"}
    assert _run_all(runner, [job_id])[0].action == "dropped"


def test_retryable_error_requeues_until_the_attempts_cap(make_runner, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    add_questions(engine, 1)
    (job_id,) = enqueue(engine, 1).job_ids
    teacher = FakeTeacher(
        lambda p, m: TeacherError("HTTP 503: overloaded", retryable=True, status=503)
    )
    runner = make_runner(teacher, max_attempts=2)
    first = _run_all(runner, [job_id])[0]
    assert first.action == "requeue" and first.delay > 0
    with session_scope(engine) as s:
        assert s.get(Job, job_id).status == JobStatus.queued  # type: ignore[union-attr]
    second = _run_all(runner, [job_id])[0]
    assert second.action == "failed"
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == JobStatus.failed and job.attempts == 2
        assert "HTTP 503: overloaded" in (job.last_error or "")


def test_non_retryable_error_fails_at_once(make_runner, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    add_questions(engine, 1)
    (job_id,) = enqueue(engine, 1).job_ids
    msg = "HTTP 400: This model's maximum context length is 1024 tokens"
    teacher = FakeTeacher(lambda p, m: TeacherError(msg, retryable=False, status=400))
    outcome = _run_all(make_runner(teacher), [job_id])[0]
    assert outcome.action == "failed" and len(teacher.calls) == 1
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.last_error == msg and job.attempts == 1


def test_unexpected_exception_is_retried_not_lost(make_runner, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    add_questions(engine, 1)
    (job_id,) = enqueue(engine, 1).job_ids

    def boom(prompt: str, max_tokens: int) -> object:
        raise RuntimeError("bug")

    outcome = _run_all(make_runner(FakeTeacher(boom)), [job_id])[0]  # type: ignore[arg-type]
    assert outcome.action == "requeue" and "RuntimeError: bug" in outcome.detail


def test_claims_and_writes_are_batched(
    make_runner, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    add_questions(engine, 120)
    ids = enqueue(engine, 120).job_ids
    import distill.jobs.runner as runner_mod

    calls = {"claim": 0, "finish": 0}
    real_claim, real_finish = runner_mod.claim, runner_mod.finish

    def counting_claim(*a, **k):  # type: ignore[no-untyped-def]
        calls["claim"] += 1
        return real_claim(*a, **k)

    def counting_finish(*a, **k):  # type: ignore[no-untyped-def]
        calls["finish"] += 1
        return real_finish(*a, **k)

    monkeypatch.setattr(runner_mod, "claim", counting_claim)
    monkeypatch.setattr(runner_mod, "finish", counting_finish)
    runner = make_runner(FakeTeacher(lambda p, m: answer("A"), delay=0.05))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda i: runner.run(i), ids))
    assert {o.action for o in outcomes} == {"done"}
    assert calls["claim"] <= 30 and calls["finish"] <= 30, calls


@pytest.mark.parametrize("reason", ["abort", "error", "repetition", "content_filter"])
def test_a_generation_the_server_ended_is_retried_never_graded(
    make_runner, engine: Engine, reason: str
) -> None:  # type: ignore[no-untyped-def]
    # vLLM shutting down with requests in flight answers them with finish_reason "abort".
    add_questions(engine, 1)
    (job_id,) = enqueue(engine, 1).job_ids
    replies = iter([answer("A", finish=reason), answer("A", finish=reason), answer("B")])
    teacher = FakeTeacher(lambda p, m: next(replies))
    runner = make_runner(teacher, max_attempts=3)
    first = _run_all(runner, [job_id])[0]
    assert first.action == "requeue" and f"finish_reason {reason!r}" in first.detail
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == JobStatus.queued and job.attempts == 1
        assert s.scalars(select(Generation)).all() == []  # nothing graded, nothing stored
    assert _run_all(runner, [job_id])[0].action == "requeue"
    assert _run_all(runner, [job_id])[0].action == "done"
    with session_scope(engine) as s:
        (generation,) = s.scalars(select(Generation)).all()
        assert generation.finish_reason == "stop" and generation.outcome != Outcome.truncated


def test_aborted_every_time_fails_after_the_attempts_cap(make_runner, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    add_questions(engine, 1)
    (job_id,) = enqueue(engine, 1).job_ids
    runner = make_runner(FakeTeacher(lambda p, m: answer("A", finish="abort")), max_attempts=2)
    _run_all(runner, [job_id])
    assert _run_all(runner, [job_id])[0].action == "failed"
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == JobStatus.failed
        assert "finish_reason 'abort'" in (job.last_error or "")
        assert s.scalars(select(Generation)).all() == []


def test_a_teacher_outage_pauses_the_worker_and_charges_no_job(make_runner, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    from distill.jobs.status import collect

    add_questions(engine, 6)
    ids = enqueue(engine, 6).job_ids
    down = threading.Event()
    down.set()

    def script(prompt: str, max_tokens: int) -> object:
        if down.is_set():
            return TeacherError("cannot reach the teacher (ConnectError)", retryable=True)
        return answer(_gold(prompt))

    teacher = FakeTeacher(script)  # type: ignore[arg-type]
    teacher.up = False
    runner = make_runner(teacher, heartbeat_seconds=0.2, lease_seconds=5.0)
    futures = [runner.submit(i) for i in ids]
    deadline = time.monotonic() + 20
    paused = None
    while time.monotonic() < deadline:
        with session_scope(engine) as s:
            paused = [w for w in collect(s, heartbeat_s=0.2).workers if w.state == "paused"]
        if paused:
            break
        time.sleep(0.1)
    assert (
        paused
        and paused[0].paused_since is not None
        and "cannot reach" in (paused[0].pause_reason or "")
    )
    with session_scope(engine) as s:
        assert {j.status for j in s.scalars(select(Job))} <= {JobStatus.running, JobStatus.queued}
    down.clear()
    teacher.up = True
    assert {f.result(timeout=60).action for f in futures} == {"done"}
    with session_scope(engine) as s:
        jobs = s.scalars(select(Job)).all()
        assert {(j.status, j.attempts) for j in jobs} == {(JobStatus.done, 1)}  # nobody charged


def test_stopping_hands_back_what_does_not_finish_within_the_grace(
    make_runner, engine: Engine
) -> None:  # type: ignore[no-untyped-def]
    add_questions(engine, 3)
    ids = enqueue(engine, 3).job_ids
    teacher = FakeTeacher(lambda p, m: answer("A"), delay=30.0)
    runner = make_runner(teacher)
    futures = [runner.submit(i) for i in ids]
    deadline = time.monotonic() + 10
    while len(teacher.calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    runner.drain(0.5)
    outcomes = [f.result(timeout=10) for f in futures]
    assert time.monotonic() - started < 5  # the grace, not the 30 s requests
    assert {o.action for o in outcomes} == {"handback"}
    late = runner.submit(ids[0]).result(timeout=5)  # a message arriving while stopping
    assert late.action == "handback"
    with session_scope(engine) as s:
        jobs = s.scalars(select(Job)).all()
        assert {(j.status, j.attempts, j.lease_token) for j in jobs} == {
            (JobStatus.queued, 0, None)
        }


def test_a_job_that_lost_its_worker_twice_is_asked_alone(make_runner, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    """If it is what kills workers, the next death is charged to it alone: the jobs claimed
    beside it finish first or go back uncharged, and nothing is in flight while it is asked."""
    from sqlalchemy import update

    add_questions(engine, 6)
    ids = enqueue(engine, 6).job_ids
    suspect = ids[0]
    with session_scope(engine) as s:
        s.execute(update(Job).where(Job.id == suspect).values(lost_leases=2))
        marker = s.get(Job, suspect).question.question  # type: ignore[union-attr]
    in_flight_with_suspect: list[int] = []

    def script(prompt: str, max_tokens: int) -> object:
        return answer("A")

    teacher = FakeTeacher(script, delay=0.3)  # type: ignore[arg-type]
    original = teacher.complete

    async def complete(request):  # type: ignore[no-untyped-def]
        if marker in request.messages[0]["content"]:
            in_flight_with_suspect.append(teacher.in_flight)
        return await original(request)

    teacher.complete = complete  # type: ignore[method-assign]
    runner = make_runner(teacher, concurrency=8)
    outcomes = dict(zip(ids, _run_all(runner, ids), strict=True))
    assert outcomes[suspect].action == "done"
    assert in_flight_with_suspect == [0]  # nothing else was being asked beside it
    handed_back = [i for i, o in outcomes.items() if o.action == "requeue"]
    for job_id in handed_back:
        assert "asked alone" in outcomes[job_id].detail
    with session_scope(engine) as s:
        for job in s.scalars(select(Job).where(Job.id.in_(handed_back))):
            assert (job.status, job.attempts) == (JobStatus.queued, 0)  # uncharged
    # The rest are taken again afterwards, side by side as usual.
    assert {o.action for o in _run_all(runner, handed_back)} <= {"done"}


def test_answers_that_wait_out_a_database_outage_keep_their_leases(
    make_runner, engine: Engine, broker: object
) -> None:  # type: ignore[no-untyped-def]
    """Every write refused for twice a lease while the answers arrive: the leases run out, as
    nobody can renew them. When the database is back, the worker renews the leases of the
    answers it kept, its reconciler leaves them alone meanwhile, and every answer is stored on
    its first claim: none taken for lost (requeued), none asked again."""
    add_questions(engine, 6)
    ids = enqueue(engine, 6).job_ids
    down = threading.Event()

    def refuse(*args: object) -> None:
        if down.is_set():
            raise sa_exc.OperationalError("UPDATE", {}, Exception("database is read-only"))

    event.listen(engine, "before_cursor_execute", refuse)
    try:
        teacher = FakeTeacher(lambda p, m: answer("A"), delay=0.3)
        runner = make_runner(
            teacher,
            lease_seconds=2.0,
            heartbeat_seconds=0.5,
            reconcile_seconds=0.3,
            broker_url=os.environ["DISTILL_BROKER_URL"],
        )
        futures = [runner.submit(i) for i in ids]
        deadline = time.monotonic() + 10
        while len(teacher.calls) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(teacher.calls) == len(ids)
        down.set()  # the answers arrive 0.3 s into the outage
        time.sleep(4.0)
        down.clear()
        outcomes = [f.result(timeout=30) for f in futures]
    finally:
        down.clear()
        event.remove(engine, "before_cursor_execute", refuse)
    assert {o.action for o in outcomes} == {"done"}
    assert len(teacher.calls) == len(ids)
    with session_scope(engine) as s:
        jobs = s.scalars(select(Job)).all()
        assert {(j.status, j.attempts, j.lost_leases) for j in jobs} == {(JobStatus.done, 1, 0)}
