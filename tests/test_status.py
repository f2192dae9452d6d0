"""Rates that describe the present: the recent window while work is left, the run's own average
once it is finished, "idle" for a queue with nothing left; the same numbers in `status` and in
`enqueue --wait`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from typer.testing import CliRunner

from distill.choices import OptionOrder
from distill.cli import app
from distill.db import session_scope
from distill.jobs.status import collect
from distill.models import Job, JobStatus, Outcome, Question, utcnow
from tests.support.factories import (
    add_generation,
    add_job,
    add_question,
    add_questions,
    add_run,
    enqueue,
)

runner = CliRunner()


def _finish(engine: Engine, ids: list[int], *, started_ago: float, finished_ago: float) -> None:
    """Mark jobs done with a 100-token generation, started and finished that long ago."""
    now = utcnow()
    with session_scope(engine) as s:
        for job in s.scalars(select(Job).where(Job.id.in_(ids))):
            job.status = JobStatus.done
            job.started_at = now - timedelta(seconds=started_ago)
            job.finished_at = now - timedelta(seconds=finished_ago)
            add_generation(s, job=job, question=job.question, completion_tokens=100)


def test_an_active_run_reports_the_recent_window(engine: Engine) -> None:
    add_questions(engine, 12)
    ids = enqueue(engine, 12).job_ids
    _finish(engine, ids[:6], started_ago=60, finished_ago=30)  # 6 jobs in the last minute
    with session_scope(engine) as s:
        report = collect(s, run_id=1)
    assert report.rate_basis == "recent" and report.rate_note() == "last 300 s"
    assert report.jobs_per_min == pytest.approx(6.0, rel=0.05)  # 6 jobs over the 60 s span
    assert report.completion_tokens_per_s == pytest.approx(10.0, rel=0.05)
    assert report.eta_s == pytest.approx(60.0, rel=0.05)  # 6 left at 6 jobs/min


def test_a_finished_run_reports_its_own_average_not_a_decaying_rate(engine: Engine) -> None:
    add_questions(engine, 10)
    ids = enqueue(engine, 10).job_ids
    # Finished long ago: the recent window is empty, the run took 100 s for 10 jobs.
    _finish(engine, ids, started_ago=1000, finished_ago=900)
    with session_scope(engine) as s:
        report = collect(s, run_id=1)
    assert report.rate_basis == "run" and report.rate_note() == "run average"
    assert report.jobs_per_min == pytest.approx(6.0)
    assert report.completion_tokens_per_s == pytest.approx(10.0)
    assert report.eta_s == 0.0
    table = " ".join(runner.invoke(app, ["status", "--run", "1"]).output.split())
    assert "6.0 (run average)" in table


def test_a_queue_with_nothing_left_is_idle(engine: Engine) -> None:
    add_questions(engine, 4)
    ids = enqueue(engine, 4).job_ids
    _finish(engine, ids, started_ago=50, finished_ago=40)
    with session_scope(engine) as s:
        report = collect(s)
    assert report.rate_basis == "idle"
    assert (report.jobs_per_min, report.completion_tokens_per_s) == (0.0, 0.0)
    result = runner.invoke(app, ["status"])
    assert "idle" in result.output and "ETA" in result.output
    as_json = runner.invoke(app, ["status", "--json"])
    assert '"rate_basis":"idle"' in as_json.output


def test_enqueue_wait_shows_the_status_numbers(
    settings: Any, engine: Engine, broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_questions(engine, 5)
    import distill.cli.progress as progress_cli

    def work_then_sleep(seconds: float) -> None:
        # What a worker would do between two polls of the progress bar.
        with session_scope(engine) as s:
            queued = list(s.scalars(select(Job.id).where(Job.status == JobStatus.queued)))
        _finish(engine, queued, started_ago=20, finished_ago=10)

    monkeypatch.setattr(progress_cli.time, "sleep", work_then_sleep)
    result = runner.invoke(app, ["enqueue", "--n", "5", "--wait"])
    assert result.exit_code == 0, result.output
    # 5 jobs in 10 s: 30 jobs/min, the run's average once it is finished.
    assert "5 done, 0 failed" in result.output
    assert "30.0 jobs/min (run average)" in result.output


def _mixed_queue(engine: Engine) -> dict[str, int]:
    """Two runs in every state a queue holds (queued, running, done with each outcome, failed),
    referring questions in both; run "b" finished long ago, run "a" is still going."""
    now = utcnow()
    outcomes = list(Outcome)
    with session_scope(engine) as s:
        questions = [add_question(s) for _ in range(6)]
        kinds = ["fixed", "anchored", "free", "fixed", "free", "free"]
        for q, kind in zip(questions, kinds, strict=True):
            q.option_order = OptionOrder(kind)
        a, b = add_run(s, samples_per_question=3), add_run(s, samples_per_question=3)
        n = 0
        for run, asked, ago in ((a, questions[:4], 0.0), (b, questions[2:], 5000.0)):
            for q in asked:
                for k in range(3):
                    n += 1
                    if run is a and n % 5 == 0:
                        status = JobStatus.queued
                    elif run is a and n % 7 == 0:
                        status = JobStatus.running
                    elif n % 6 == 0:
                        status = JobStatus.failed
                    else:
                        status = JobStatus.done
                    budget = 1024 if run is a else 2048  # the same question in both runs
                    job = add_job(
                        s, question=q, run=run, sample_index=k, status=status, max_tokens=budget
                    )
                    if status is JobStatus.running:
                        job.lease_expires_at = now - timedelta(seconds=5 if n % 2 else -60)
                    if status in (JobStatus.done, JobStatus.failed):
                        job.started_at = now - timedelta(seconds=ago + 20 + n)
                        job.finished_at = now - timedelta(seconds=ago + n)
                    if status is JobStatus.done:
                        add_generation(
                            s,
                            job=job,
                            question=q,
                            outcome=outcomes[n % len(outcomes)],
                            completion_tokens=10 * n,
                        )
        return {"a": a.id, "b": b.id}


def _expected(engine: Engine, run_id: int | None) -> dict[str, Any]:
    """What status must say, counted in Python from the rows themselves."""
    with session_scope(engine) as s:
        jobs = [j for j in s.scalars(select(Job)) if run_id is None or j.run_id == run_id]
        by_status = {st.value: sum(j.status is st for j in jobs) for st in JobStatus}
        gens = [j.generation for j in jobs if j.generation is not None]
        by_outcome = {o.value: sum(g.outcome is o for g in gens) for o in Outcome}
        asked = {j.question_id for j in jobs}
        referring: dict[str, int] = {}
        for q in s.scalars(select(Question)):
            if q.id in asked and q.option_order is not OptionOrder.free:
                referring[q.option_order.value] = referring.get(q.option_order.value, 0) + 1
        finished = [j for j in jobs if j.generation is not None]
        first = min(j.started_at for j in finished if j.started_at is not None)
        last = max(j.finished_at for j in finished if j.finished_at is not None)
        tokens = sum(j.generation.completion_tokens or 0 for j in finished if j.generation)
        stale = sum(
            j.status is JobStatus.running
            and j.lease_expires_at is not None
            and j.lease_expires_at < utcnow()
            for j in jobs
        )
    return {
        "jobs": by_status,
        "outcomes": by_outcome,
        "referring_questions": dict(sorted(referring.items())),
        "stale_leases": stale,
        "finished": (len(finished), tokens, (last - first).total_seconds()),
    }


def test_status_numbers_are_the_rows_counted(engine: Engine) -> None:
    """The whole queue and each run, as the rows say: the queries that read indexes only (the
    outcomes without a join, the referring kinds by IN) count what the rows hold."""
    runs = _mixed_queue(engine)
    for run_id in (None, runs["a"], runs["b"]):
        expected = _expected(engine, run_id)
        with session_scope(engine) as s:
            report = collect(s, run_id=run_id)
        assert report.jobs == expected["jobs"], run_id
        assert report.outcomes == expected["outcomes"], run_id
        assert report.total == sum(expected["jobs"].values())
        graded = sum(expected["outcomes"].values())
        assert report.accuracy == pytest.approx(expected["outcomes"]["correct"] / graded)
        assert report.referring_questions == expected["referring_questions"], run_id
        assert report.stale_leases == expected["stale_leases"], run_id
    # The finished run reports its own average: its generations over first start to last finish.
    with session_scope(engine) as s:
        finished = collect(s, run_id=runs["b"])
    count, tokens, span = _expected(engine, runs["b"])["finished"]
    assert finished.rate_basis == "run"
    assert finished.jobs_per_min == pytest.approx(60.0 * count / span)
    assert finished.completion_tokens_per_s == pytest.approx(tokens / span)


def test_status_reads_indexes_not_whole_tables(engine: Engine) -> None:
    """On SQLite, whose planner decides the same on an empty table as on a million rows (distill
    never runs ANALYZE), no statement of `status` reads a table whole: each searches an index or
    scans a covering one. (PostgreSQL's planner rightly scans small tables, so the figures on a
    million jobs are in docs/benchmarks.md, "Status at scale".)"""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's plans do not depend on the table's size; PostgreSQL's do")
    runs = _mixed_queue(engine)
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with session_scope(engine) as s:
            collect(s)
            collect(s, run_id=runs["a"])
            collect(s, run_id=runs["b"])
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements
    with engine.connect() as conn:
        for statement, params in statements:
            for *_, detail in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params):
                whole = detail.startswith("SCAN") and "COVERING INDEX" not in detail
                assert not whole, f"{detail}: {' '.join(statement.split())}"
