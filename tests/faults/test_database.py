"""The database drops its connections, refuses writes for a minute, is shared by four workers,
or is handed a character it cannot store."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, select, text

from distill import db as dbmod
from distill.db import session_scope
from distill.models import Generation, JobStatus
from tests.conftest import PG_ADMIN_URL
from tests.faults.conftest import FaultStack
from tests.support.factories import add_questions
from tests.support.fake_openai import Reply
from tests.support.workers import count, wait_until

pytestmark = pytest.mark.faults


def _terminate_backends(engine: Engine) -> int:
    """pg_terminate_backend on every other connection to the run's database."""
    with engine.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
        conn.commit()
    return int(killed)


def _start_run(stack: FaultStack, engine: Engine, jobs: int, *, workers: int = 2) -> None:
    stack.teacher.latency = 0.5
    add_questions(engine, jobs)
    for _ in range(workers):
        stack.start_worker(concurrency=16)
    stack.enqueue(jobs)
    wait_until(
        lambda: count(engine, JobStatus.done) >= 20,
        timeout=120,
        what="20 done",
        on_fail=stack.tails,
    )


def _answers_lost(stack: FaultStack, jobs: int) -> int:
    """Chat requests beyond one per job: answers the teacher gave that had to be asked again."""
    return len([r for r in stack.teacher.requests if r.get("max_tokens") != 1]) - jobs


@pytest.mark.postgres
def test_terminated_connections_mid_run(stack: FaultStack, engine: Engine) -> None:
    jobs = 200
    _start_run(stack, engine, jobs)
    killed = 0
    for _ in range(3):
        killed += _terminate_backends(engine)
        time.sleep(2)
    assert killed > 0
    stack.wait_final(engine, jobs, timeout=240)
    assert stack.check(engine) == {JobStatus.done: jobs}
    stack.record("pg_terminate_backend ×3", connections_killed=killed)


@contextmanager
def _read_only_database(engine: Engine) -> Iterator[None]:
    """New sessions of the run's database start read-only, and the open ones are dropped so that
    every worker reconnects into it: every write refused, as on a failed-over replica."""
    name = engine.url.database
    admin = dbmod.make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
        _terminate_backends(engine)
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" RESET default_transaction_read_only'))
        admin.dispose()
        _terminate_backends(engine)  # reconnect, writable again


@pytest.mark.postgres
def test_a_database_refusing_writes_for_a_minute_loses_no_answer(
    stack: FaultStack, engine: Engine
) -> None:
    jobs = 200
    _start_run(stack, engine, jobs)
    with _read_only_database(engine):
        time.sleep(60)
    back = time.monotonic()
    stack.wait_final(engine, jobs, timeout=300)
    assert stack.check(engine) == {JobStatus.done: jobs}
    lost = _answers_lost(stack, jobs)
    stack.record(
        "database read-only 60 s", answers_asked_again=lost, rest_of_run_s=time.monotonic() - back
    )
    assert lost == 0, f"{lost} answers were thrown away and asked again"


@pytest.mark.sqlite
def test_a_sqlite_write_lock_held_for_a_minute_loses_no_answer(
    stack: FaultStack, engine: Engine
) -> None:
    """Another process holds SQLite's write lock (a backup, a stray `sqlite3` shell) for 60 s."""
    jobs = 200
    _start_run(stack, engine, jobs)
    path = engine.url.database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        time.sleep(60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    stack.wait_final(engine, jobs, timeout=300)
    assert stack.check(engine) == {JobStatus.done: jobs}
    lost = _answers_lost(stack, jobs)
    stack.record("sqlite write lock held 60 s", answers_asked_again=lost)
    assert lost == 0, f"{lost} answers were thrown away and asked again"


@pytest.mark.postgres
def test_a_reply_with_a_nul_character_is_stored_and_noted(
    stack: FaultStack, engine: Engine
) -> None:
    """PostgreSQL text cannot hold U+0000: the reply is stored with U+FFFD in its place and a
    note, and the jobs written beside it are not held up."""
    poisoned = threading.Lock()
    sent: list[str] = []

    def nul_reply(prompt: str) -> Reply | None:
        with poisoned:
            if len(sent) < 5:
                sent.append(prompt)
                return Reply("<think>\nA\x00B\n</think>\n\nThe answer is A.")
        return None

    stack.teacher.on_request = nul_reply  # type: ignore[assignment]
    add_questions(engine, 40)
    stack.start_worker(concurrency=16)
    stack.enqueue(40)
    stack.wait_final(engine, 40, timeout=120)
    assert stack.check(engine) == {JobStatus.done: 40}
    with session_scope(engine) as s:
        noted = s.scalars(select(Generation).where(Generation.notes.is_not(None))).all()
    assert len(noted) == 5
    assert all("\ufffd" in (g.raw_text or "") for g in noted)
    assert _answers_lost(stack, 40) == 0


@pytest.mark.sqlite
def test_four_workers_on_one_sqlite_file_never_see_database_is_locked(
    stack: FaultStack, engine: Engine
) -> None:
    jobs = 1000
    stack.teacher.latency = 0.05
    add_questions(engine, jobs)
    for _ in range(4):
        stack.start_worker(concurrency=32)
    started = time.monotonic()
    stack.enqueue(jobs)
    stack.wait_final(engine, jobs, timeout=600)
    assert stack.check(engine) == {JobStatus.done: jobs}
    assert "database is locked" not in stack.logs()
    stack.record(
        "4 workers, one SQLite file", jobs=jobs, run_s=round(time.monotonic() - started, 1)
    )
