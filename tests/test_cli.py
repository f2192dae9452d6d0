"""The CLI contract: help everywhere, one-line errors, status JSON, retry."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import redis
from sqlalchemy import Engine, select, update
from typer.main import get_command
from typer.testing import CliRunner

from distill.cli import app
from distill.config import Settings
from distill.db import session_scope
from distill.jobs.lease import Success, claim, finish
from distill.models import Job, JobStatus, Outcome
from tests.support.factories import add_questions, enqueue, generation
from tests.support.messages import queued_job_ids
from tests.support.workers import TEACHER_QUEUE

runner = CliRunner()


def _leaf_commands() -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []

    def walk(cmd: object, path: str) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, f"{path} {name}".strip())
        else:
            out.append((path, cmd))

    walk(get_command(app), "")
    return out


def test_every_command_has_help_with_an_example() -> None:
    commands = _leaf_commands()
    names = {name for name, _ in commands}
    assert {
        "import",
        "enqueue",
        "worker",
        "status",
        "retry",
        "db upgrade",
        "teacher check",
        "teacher serve",
    } <= names
    for name, cmd in commands:
        help_text = getattr(cmd, "help", None) or ""
        assert help_text.strip(), f"`distill {name}` has no help"
        assert "Example" in help_text, f"`distill {name}` help shows no example"
        result = runner.invoke(app, [*name.split(), "--help"])
        assert result.exit_code == 0, name


def test_user_error_is_one_line_without_traceback(settings: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "distill", "enqueue", "--n", "5"],
        capture_output=True,
        text=True,
        env={"DISTILL_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "error: no questions in the database; run `distill import FILE` first"
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_unreachable_database_is_a_one_line_error(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "distill", "status"],
        capture_output=True,
        text=True,
        env={
            "DISTILL_DATABASE_URL": "postgresql+psycopg://x@127.0.0.1:1/none",
            "PATH": "/usr/bin:/bin",
        },
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        result.stderr.startswith("error: database error")
        and len(result.stderr.strip().splitlines()) == 1
    )


def test_enqueue_publishes_the_jobs_after_commit_a_chunk_to_a_message(
    settings: Settings, engine: Engine, broker: redis.Redis
) -> None:
    add_questions(engine, 10)
    result = runner.invoke(app, ["enqueue", "--n", "4", "--samples", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stderr may warn that no teacher answers
    assert summary["jobs"] == 8 and summary["questions"] == 4
    assert len(queued_job_ids(broker, TEACHER_QUEUE)) == 8
    bodies = [json.loads(m) for m in broker.lrange(TEACHER_QUEUE, 0, -1)]
    assert all(b["headers"]["task"] == "distill.run_jobs" for b in bodies)
    assert len(bodies) == 1  # 8 jobs, up to 16 to a message
    more = runner.invoke(app, ["enqueue", "--n", "100"])
    assert "only 6 unasked question(s) left" in more.output


_PUBLISH_PROBE = """
import sys
import distill.jobs.publish as publish

real = publish.commit_and_publish

def spy(*args, **kwargs):
    display = ("rich", "distill.cli.progress", "distill.jobs.status")
    print("LOADED", [name for name in display if name in sys.modules], file=sys.stderr)
    return real(*args, **kwargs)

publish.commit_and_publish = spy
from distill.cli import main

sys.argv = ["distill", "enqueue", "--n", "2", "--json"]
main()
"""


def test_enqueue_reaches_the_broker_before_loading_the_status_display(
    settings: Settings, engine: Engine, broker: redis.Redis
) -> None:
    """The workers wait on `enqueue`'s start-up before the first claim (docs/benchmarks.md,
    run J): the progress display (rich, the status queries) loads only for --wait, never on
    the way to the first message, warnings or not."""
    add_questions(engine, 3)
    env = {k: v for k, v in os.environ.items() if k.startswith(("DISTILL_", "PATH"))}
    result = subprocess.run(
        [sys.executable, "-c", _PUBLISH_PROBE],
        capture_output=True,
        text=True,
        env={**env, "DISTILL_TEACHER_URL": "http://127.0.0.1:9/v1"},  # nothing answers
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["jobs"] == 2
    assert "LOADED []" in result.stderr.splitlines()
    assert "warning: teacher not reachable" in result.stderr  # the budget went unchecked
    assert len(queued_job_ids(broker, TEACHER_QUEUE)) == 2


def test_status_json_counts(settings: Settings, engine: Engine) -> None:
    add_questions(engine, 3)
    ids = enqueue(engine, 3).job_ids
    result = runner.invoke(app, ["status", "--json"])
    report = json.loads(result.output)
    assert report["jobs"] == {"queued": 3, "running": 0, "done": 0, "failed": 0}
    assert report["outcomes"]["correct"] == 0 and report["accuracy"] is None
    with session_scope(engine) as s:
        c = claim(s, ids[:1], lease_seconds=60, max_attempts=3).claimed[0]
    with session_scope(engine) as s:
        finish(s, [Success(c.job_id, c.lease_token, generation(Outcome.correct))], max_attempts=3)
    report = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert report["jobs"]["done"] == 1 and report["outcomes"]["correct"] == 1
    assert report["accuracy"] == 1.0 and report["jobs_per_min"] > 0
    assert report["completion_tokens_per_s"] > 0 and report["eta_s"] is not None
    table = runner.invoke(app, ["status"])
    assert table.exit_code == 0 and "accuracy" in table.output


def test_retry_failed_requeues_and_publishes(
    settings: Settings, engine: Engine, broker: redis.Redis
) -> None:
    add_questions(engine, 2)
    ids = enqueue(engine, 2).job_ids
    with session_scope(engine) as s:
        s.execute(update(Job).values(status=JobStatus.failed, attempts=3, last_error="x"))
    result = runner.invoke(app, ["retry", "--failed"])
    assert result.exit_code == 0 and "re-queued 2 failed job(s)" in result.output
    with session_scope(engine) as s:
        assert {(j.status, j.attempts) for j in s.scalars(select(Job))} == {(JobStatus.queued, 0)}
    assert sorted(queued_job_ids(broker, TEACHER_QUEUE)) == sorted(ids)


def test_retry_truncated_needs_a_bigger_budget(
    settings: Settings, engine: Engine, broker: redis.Redis
) -> None:
    add_questions(engine, 2)
    ids = enqueue(engine, 2, max_tokens=256).job_ids
    for job_id, outcome in zip(ids, [Outcome.truncated, Outcome.correct], strict=True):
        with session_scope(engine) as s:
            c = claim(s, [job_id], lease_seconds=60, max_attempts=3).claimed[0]
        with session_scope(engine) as s:
            finish(s, [Success(job_id, c.lease_token, generation(outcome))], max_attempts=3)
    assert runner.invoke(app, ["retry", "--truncated"]).exit_code == 1
    same = runner.invoke(app, ["retry", "--truncated", "--max-tokens", "256"])
    assert same.exit_code == 1 and "larger than 256" in same.output
    ok = runner.invoke(app, ["retry", "--truncated", "--max-tokens", "1024"])
    assert ok.exit_code == 0 and "created 1 job(s)" in ok.output, ok.output
    with session_scope(engine) as s:
        new = s.scalars(select(Job).where(Job.supersedes_id.is_not(None))).one()
        old = s.get(Job, ids[0])
        assert old is not None
        assert new.max_tokens == 1024 and new.supersedes_id == ids[0]
        assert new.choice_order == old.choice_order and new.sample_index == old.sample_index
    # The retried generation is not offered again; the new job is queued and published.
    again = runner.invoke(app, ["retry", "--truncated", "--max-tokens", "2048"])
    assert "created 0 job(s)" in again.output
    assert len(queued_job_ids(broker, TEACHER_QUEUE)) == 1


def test_retry_stuck_republishes_queued_and_expired(
    settings: Settings, engine: Engine, broker: redis.Redis
) -> None:
    add_questions(engine, 3)
    enqueue(engine, 3)
    result = runner.invoke(app, ["retry", "--stuck"])
    assert result.exit_code == 0 and "re-publishing 3" in result.output
    assert len(queued_job_ids(broker, TEACHER_QUEUE)) == 3


def test_a_command_where_there_is_no_database_says_so_and_creates_none(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DISTILL_DATABASE_URL": "sqlite:///distill.db"}
    for args in (["status"], ["export", "--format", "direct", "--out", "x"], ["retry", "--stuck"]):
        result = subprocess.run(
            [sys.executable, "-m", "distill", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=False,
        )
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("error: no database at distill.db"), result.stderr
        assert "distill db upgrade" in result.stderr and len(result.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_database_without_the_schema_or_behind_it_says_how_to_fix_it(tmp_path: Path) -> None:
    from alembic import command

    from distill.migrate import alembic_config

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    old = tmp_path / "old.db"
    command.upgrade(alembic_config(f"sqlite:///{old}"), "0001")
    for path, message in ((empty, "has no distill tables"), (old, "is at schema revision 0001")):
        result = subprocess.run(
            [sys.executable, "-m", "distill", "status"],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "DISTILL_DATABASE_URL": f"sqlite:///{path}"},
            check=False,
        )
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert "`distill db upgrade`" in result.stderr


def test_version() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"distill {version('distill')}\n"
