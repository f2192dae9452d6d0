"""Secrets and content stay out of logs and messages, on the normal path and the error paths."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, select

from distill.db import session_scope
from distill.models import Generation, JobStatus, Question
from tests.faults.conftest import FaultStack
from tests.support.factories import add_questions
from tests.support.fake_openai import Error, Reply

pytestmark = pytest.mark.faults

QUESTION_CANARY = "canary-question-7f3a9c"
ANSWER_CANARY = "canary-answer-51d2e8"
API_KEY = "sk-canary-key-0b94"
URL_PASSWORD = "canary-pass-c61f"


def _monitor(client: redis.Redis, seen: list[str], stop: threading.Event) -> None:
    with client.monitor() as monitor:
        for command in monitor.listen():
            seen.append(str(command.get("command", "")))
            if stop.is_set():
                return


def _decoded(commands: list[str]) -> str:
    """Every command Redis received, with Celery's base64 message bodies decoded."""
    out = []
    for command in commands:
        out.append(command)
        for token in command.split(" "):
            try:
                payload: Any = json.loads(token)
            except ValueError:
                continue
            if isinstance(payload, dict) and isinstance(payload.get("body"), str):
                out.append(base64.b64decode(payload["body"]).decode(errors="replace"))
    return "\n".join(out)


def test_no_log_line_and_no_broker_message_carries_content_or_secrets(
    stack: FaultStack, engine: Engine
) -> None:
    """A canary in a question and in a teacher answer; an API key and a password in the
    teacher's URL; errors on the way (5xx, a 400). At DEBUG — more than the default INFO —
    the worker logs none of them, and no message through Redis carries them."""
    add_questions(engine, 12)
    with session_scope(engine) as s:
        for question in s.scalars(select(Question)):
            question.question += f" ({QUESTION_CANARY})"
    stack.teacher.script(Error(503, "overloaded"), Error(400, "bad request"))
    stack.teacher.on_request = lambda prompt: Reply(  # type: ignore[assignment]
        f"<think>\nThinking about {ANSWER_CANARY}.\n</think>\n\nThe answer is A."
    )
    seen: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(
        target=_monitor, args=(stack.redis.client(), seen, stop), daemon=True
    )
    watcher.start()
    teacher_url = stack.teacher.url.replace("http://", f"http://distill:{URL_PASSWORD}@")
    stack.start_worker(
        concurrency=8,
        loglevel="DEBUG",
        DISTILL_TEACHER_URL=teacher_url,
        DISTILL_TEACHER_API_KEY=API_KEY,
    )
    stack.enqueue(12)
    stack.wait_final(engine, 12, timeout=120)
    stop.set()
    stack.redis.client().ping()  # one more command, so the monitor loop sees the stop
    watcher.join(timeout=10)
    statuses = stack.check(engine)
    assert statuses[JobStatus.done] == 11 and statuses[JobStatus.failed] == 1  # the 400
    with session_scope(engine) as s:  # the canaries did travel, where they belong
        assert all(ANSWER_CANARY in g.raw_text for g in s.scalars(select(Generation)))
    assert any(QUESTION_CANARY in str(r["messages"]) for r in stack.teacher.requests)
    sent = [{k.lower(): v for k, v in h.items()} for h in stack.teacher.headers]
    assert all(h.get("authorization") == f"Bearer {API_KEY}" for h in sent)

    logs = stack.logs()
    assert "teacher error" in logs or "HTTP 400" in logs  # the error paths did log
    broker_traffic = _decoded(seen)
    assert "run_job" in broker_traffic  # the monitor did see the messages
    for secret in (QUESTION_CANARY, ANSWER_CANARY, API_KEY, URL_PASSWORD):
        assert secret not in logs, f"{secret} in a worker log line"
        assert secret not in broker_traffic, f"{secret} in a broker message"
