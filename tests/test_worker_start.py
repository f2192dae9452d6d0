"""A worker checks, before it takes a message, that it can work: the database is reachable and at
this code's schema, the broker answers, the teacher serves the model. Otherwise one line and a
non-zero exit (compose restarts it), never `ready` followed by a traceback per batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from distill.config import Settings
from distill.teacher.server import free_port
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.workers import redis_db


def _start(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distill", "worker"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=cwd,
        timeout=120,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_no_database(tmp_path: Path) -> None:
    line = _one_line(_start({"DISTILL_DATABASE_URL": "sqlite:///nowhere.db"}, tmp_path))
    assert line.startswith("error: no database at nowhere.db")


def test_no_broker(settings: Settings, tmp_path: Path) -> None:
    env = {
        "DISTILL_DATABASE_URL": settings.database_url,
        "DISTILL_BROKER_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0",
    }
    line = _one_line(_start(env, tmp_path))
    assert line.startswith("error: the broker at redis://***@127.0.0.1:") and "hunter2" not in line


@pytest.mark.parametrize("served", ["other-model", None])
def test_a_teacher_that_does_not_serve_the_model(
    settings: Settings, tmp_path: Path, served: str | None
) -> None:
    with redis_db() as broker, FakeOpenAIServer(served or "x") as teacher:
        env = {
            "DISTILL_DATABASE_URL": settings.database_url,
            "DISTILL_BROKER_URL": broker,
            "DISTILL_TEACHER_URL": teacher.url if served else f"http://127.0.0.1:{free_port()}/v1",
            "DISTILL_TEACHER_MODEL": "test-teacher",
        }
        line = _one_line(_start(env, tmp_path))
    if served:
        assert line == (
            f"error: the teacher at {teacher.url} serves other-model, not test-teacher "
            "(DISTILL_TEACHER_MODEL)"
        )
    else:
        assert line.startswith("error: the teacher does not answer: cannot reach the teacher")
