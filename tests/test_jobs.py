"""The job state machine against the real database: claims, leases, finishing, attempts cap."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, func, select, update

from distill.db import session_scope
from distill.jobs.lease import Failure, Success, claim, finish
from distill.models import Base, Generation, Job, JobStatus, utcnow
from tests.support.factories import add_questions, enqueue, generation


def _claim(engine: Engine, ids: list[int], lease: float = 60.0, cap: int = 3):  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return claim(s, ids, lease_seconds=lease, max_attempts=cap)


def _finish(engine: Engine, results, cap: int = 3):  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return finish(s, results, max_attempts=cap)


def _job(engine: Engine, job_id: int) -> Job:
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def _expire(engine: Engine, job_id: int) -> None:
    with session_scope(engine) as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def test_claim_finish_and_duplicate_messages(engine: Engine) -> None:
    add_questions(engine, 3)
    ids = enqueue(engine, 3).job_ids
    first = _claim(engine, ids + ids)  # a duplicate message in the same batch claims once
    assert sorted(c.job_id for c in first.claimed) == ids
    assert all(c.messages[0]["role"] == "user" for c in first.claimed)
    second = _claim(engine, ids)
    assert not second.claimed and set(second.busy) == set(ids)
    assert all(0 < s <= 60 for s in second.busy.values())
    c = first.claimed[0]
    assert _finish(engine, [Success(c.job_id, c.lease_token, generation())]) == {
        c.job_id: JobStatus.done
    }
    # The same result delivered again changes nothing.
    assert _finish(engine, [Success(c.job_id, c.lease_token, generation())]) == {c.job_id: None}
    assert _claim(engine, [c.job_id]).final == [c.job_id]
    job = _job(engine, c.job_id)
    assert job.status == JobStatus.done and job.attempts == 1 and job.finished_at is not None
    with session_scope(engine) as s:
        assert s.scalar(select(func.count(Generation.id))) == 1


def test_expired_lease_is_reclaimed_and_the_old_owner_loses(engine: Engine) -> None:
    add_questions(engine, 1)
    (job_id,) = enqueue(engine, 1).job_ids
    old = _claim(engine, [job_id]).claimed[0]
    _expire(engine, job_id)
    new = _claim(engine, [job_id]).claimed[0]
    assert new.attempts == 2 and new.lease_token != old.lease_token
    assert _finish(engine, [Success(job_id, old.lease_token, generation())]) == {job_id: None}
    assert _finish(engine, [Success(job_id, new.lease_token, generation())]) == {
        job_id: JobStatus.done
    }


def test_retryable_failures_until_the_cap_then_failed_with_the_error(engine: Engine) -> None:
    add_questions(engine, 1)
    (job_id,) = enqueue(engine, 1).job_ids
    for attempt in (1, 2):
        c = _claim(engine, [job_id], cap=3).claimed[0]
        assert c.attempts == attempt
        status = _finish(engine, [Failure(job_id, c.lease_token, "HTTP 503", True)], cap=3)
        assert status == {job_id: JobStatus.queued}
        assert _job(engine, job_id).last_error == "HTTP 503"
    c = _claim(engine, [job_id], cap=3).claimed[0]
    assert _finish(engine, [Failure(job_id, c.lease_token, "HTTP 503", True)], cap=3) == {
        job_id: JobStatus.failed
    }
    job = _job(engine, job_id)
    assert job.status == JobStatus.failed and job.attempts == 3
    assert job.last_error is not None and "gave up after 3 attempts" in job.last_error
    assert _claim(engine, [job_id]).final == [job_id]


def test_non_retryable_failure_is_final_at_once(engine: Engine) -> None:
    add_questions(engine, 1)
    (job_id,) = enqueue(engine, 1).job_ids
    c = _claim(engine, [job_id]).claimed[0]
    msg = "HTTP 400: This model's maximum context length is 1024 tokens"
    assert _finish(engine, [Failure(job_id, c.lease_token, msg, False)]) == {
        job_id: JobStatus.failed
    }
    job = _job(engine, job_id)
    assert job.attempts == 1 and job.last_error == msg


def test_lease_expiring_at_the_cap_fails_the_job(engine: Engine) -> None:
    add_questions(engine, 1)
    (job_id,) = enqueue(engine, 1).job_ids
    for _ in range(2):
        _claim(engine, [job_id], cap=2)
        _expire(engine, job_id)
    result = _claim(engine, [job_id], cap=2)
    assert result.exhausted == [job_id] and not result.claimed
    job = _job(engine, job_id)
    assert job.status == JobStatus.failed and "lease expired" in (job.last_error or "")


# -- property: random interleavings of claims, results and lease expiries ------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["claim", "ok", "retryable", "fatal", "expire", "stale_ok"]),
        st.integers(0, 2),
    ),
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_state_machine_invariants(ops: list[tuple[str, int]]) -> None:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    add_questions(engine, 3)
    ids = enqueue(engine, 3).job_ids
    cap = 3
    tokens: dict[int, list[str]] = {i: [] for i in ids}
    for op, k in ops:
        job_id = ids[k]
        if op == "claim":
            for c in _claim(engine, [job_id], cap=cap).claimed:
                tokens[job_id].append(c.lease_token)
        elif op == "expire":
            _expire(engine, job_id)
        elif tokens[job_id]:
            token = tokens[job_id][0] if op == "stale_ok" else tokens[job_id][-1]
            result: Success | Failure = (
                Success(job_id, token, generation())
                if op in ("ok", "stale_ok")
                else Failure(job_id, token, "boom", op == "retryable")
            )
            _finish(engine, [result], cap=cap)
        with session_scope(engine) as s:
            for job in s.scalars(select(Job)):
                generations = s.scalar(
                    select(func.count(Generation.id)).where(Generation.job_id == job.id)
                )
                assert (job.status == JobStatus.done) == (generations == 1)
                assert job.attempts <= cap
                if job.status == JobStatus.running:
                    assert job.lease_token is not None and job.lease_expires_at is not None
                else:
                    assert job.lease_token is None
                if job.status == JobStatus.failed:
                    assert job.last_error
                if job.status in (JobStatus.done, JobStatus.failed):
                    assert job.finished_at is not None
