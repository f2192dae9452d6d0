"""The fault-injection tier (`-m faults`): real `distill worker` processes, a Redis server and a
fake teacher of the test's own, the configured database; faults injected mid-run. Every test ends
by checking the same invariants (`FaultStack.check`): every job final, exactly one generation per
done job, nothing running or queued, and no job asked of the teacher more often than its cap."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from distill.cli import app
from distill.config import Settings, get_settings
from distill.db import get_engine, session_scope
from distill.models import Generation, Job, JobStatus
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.redis_server import RedisServer
from tests.support.workers import Worker, count, wait_until

# Tries per claim × claims: the most any job may be sent (outage re-sends never reach a
# stopped teacher; tests that fail requests for everyone account for it themselves).
CALLS_CAP = Settings().request_retries * Settings().max_attempts


class FaultStack:
    def __init__(self, *, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.tmp_path = tmp_path
        self.engine_url = settings.database_url
        self.redis = RedisServer(tmp_path / "redis", persistent=True).start()
        self.teacher = FakeOpenAIServer("test-teacher", latency=0.2).start()
        self.env = {
            "DISTILL_DATABASE_URL": settings.database_url,
            "DISTILL_BROKER_URL": self.redis.url,
            "DISTILL_TEACHER_URL": self.teacher.url,
            "DISTILL_TEACHER_MODEL": "test-teacher",
            "DISTILL_MAX_TOKENS": "300",
        }
        self._monkeypatch = monkeypatch
        self.set_env()
        self.workers: list[Worker] = []
        self._earlier_requests: list[dict[str, Any]] = []  # of teachers stopped mid-test

    def stop_teacher(self) -> int:
        """Stop the teacher (its port closes: connection refused); returns the port."""
        self._earlier_requests += self.teacher.requests
        port: int = self.teacher._httpd.server_address[1]
        self.teacher.stop()
        return port

    def start_teacher(self, port: int, **options: Any) -> None:
        """A new teacher on the same port, as a restarted vLLM comes back where it was."""
        self.teacher = FakeOpenAIServer("test-teacher", port=port, **options).start()

    def set_env(self, **extra: str) -> None:
        for key, value in {**self.env, **extra}.items():
            self._monkeypatch.setenv(key, value)
        get_settings.cache_clear()

    def start_worker(
        self, concurrency: int = 64, module: str = "distill", loglevel: str = "INFO", **extra: str
    ) -> Worker:
        log = self.tmp_path / f"worker{len(self.workers)}.log"
        worker = Worker({**self.env, **extra}, log, concurrency, module=module, loglevel=loglevel)
        self.workers.append(worker)
        return worker

    def enqueue(self, n: int) -> None:
        result = CliRunner().invoke(app, ["enqueue", "--n", str(n), "--json"])
        assert result.exit_code == 0, result.output

    def logs(self) -> str:
        return "\n".join(w.log.read_text(errors="replace") for w in self.workers if w.log.exists())

    def tails(self) -> str:
        """The workers' last log lines and the jobs not final: what a failed wait shows."""
        engine = get_engine(self.engine_url)
        with session_scope(engine) as s:
            left = s.execute(
                select(
                    Job.id,
                    Job.status,
                    Job.attempts,
                    Job.lost_leases,
                    Job.published_at,
                    Job.lease_expires_at,
                    Job.last_error,
                ).where(Job.status.in_([JobStatus.queued, JobStatus.running]))
            ).all()
        jobs = "\n".join(str(tuple(row)) for row in left[:20])
        return "\n---\n".join([*(w.tail(30) for w in self.workers), f"not final:\n{jobs}"])

    def wait_final(self, engine: Engine, total: int, *, timeout: float) -> float:
        """Seconds until every job is done or failed."""
        started = time.monotonic()
        wait_until(
            lambda: count(engine, JobStatus.done, JobStatus.failed) == total,
            timeout=timeout,
            what=f"all {total} jobs final",
            on_fail=self.tails,
        )
        return time.monotonic() - started

    def check(self, engine: Engine, *, calls_cap: int = CALLS_CAP) -> Counter[JobStatus]:
        with session_scope(engine) as s:
            statuses = Counter(s.scalars(select(Job.status)))
            done = set(s.scalars(select(Job.id).where(Job.status == JobStatus.done)))
            per_job = Counter(s.scalars(select(Generation.job_id)))
            nothing_left = s.scalar(
                select(func.count(Job.id)).where(
                    Job.status.in_([JobStatus.queued, JobStatus.running])
                )
            )
        assert nothing_left == 0, statuses
        assert set(per_job) == done, "a done job without its generation, or the reverse"
        assert set(per_job.values()) <= {1}, "a job stored twice"
        asked = Counter(
            str(r["messages"][-1]["content"])
            for r in [*self._earlier_requests, *self.teacher.requests]
            if r.get("max_tokens") != 1  # the outage gate's probes
        )
        assert max(asked.values(), default=0) <= calls_cap, asked.most_common(3)
        return statuses

    def record(self, what: str, **figures: float) -> None:
        """Keep a measured figure (recovery times) for the docs: appended as one JSON line to
        $DISTILL_FAULT_REPORT when it is set."""
        path = os.environ.get("DISTILL_FAULT_REPORT")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"test": what, **figures}) + "\n")

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.teacher.stop()
        self.redis.stop()


@pytest.fixture
def stack(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fault_stack = FaultStack(settings=settings, tmp_path=tmp_path, monkeypatch=monkeypatch)
    try:
        yield fault_stack
    finally:
        fault_stack.close()
