"""Rates that describe the present: the recent window while work is left, the run's own average
once it is finished, "idle" for a queue with nothing left; the same numbers in `status` and in
`enqueue --wait`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from distill.cli import app
from distill.db import session_scope
from distill.jobs.status import collect
from distill.models import Job, JobStatus, utcnow
from tests.support.factories import add_generation, add_questions, enqueue

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
