"""Real worker processes on real Redis for the end-to-end tests."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, func, select

from distill.db import session_scope
from distill.jobs.publish import queue_name
from distill.models import Job, JobStatus
from distill.prompts import PROMPT_VERSION
from tests.support.redis_server import RedisServer

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
# Where jobs of the tests' teacher ("test-teacher") are routed (distill.jobs.publish).
TEACHER_QUEUE = queue_name(("test-teacher", PROMPT_VERSION))


_SERVER: RedisServer | None = None


def private_redis() -> RedisServer:
    """The test session's own Redis server (started on first use, stopped at exit)."""
    global _SERVER
    if _SERVER is None:
        _SERVER = RedisServer(Path(tempfile.mkdtemp(prefix="distill-test-redis-"))).start()
        atexit.register(_SERVER.stop)
    return _SERVER


@contextmanager
def redis_db() -> Iterator[str]:
    """The private Redis server's URL, emptied before and after: nothing else uses it."""
    server = private_redis()
    server.flush()
    try:
        yield server.url
    finally:
        server.flush()


class Worker:
    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        concurrency: int,
        *,
        module: str = "distill",
        loglevel: str = "INFO",
    ) -> None:
        self.log = log
        self._fh = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "worker",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                loglevel,
            ],
            # The repo root on the path: a test's own worker module (tests.support.*) imports
            # from wherever the test runs.
            env={**os.environ, "PYTHONPATH": _REPO_ROOT, **env},
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no acks, as when a host dies or the OOM killer strikes."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._fh.close()

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    on_fail: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{on_fail()}")


def count(engine: Engine, *statuses: JobStatus) -> int:
    with session_scope(engine) as s:
        return s.scalar(select(func.count(Job.id)).where(Job.status.in_(statuses))) or 0
