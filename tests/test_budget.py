"""Budgets that fit the server: the served context (vLLM's `max_model_len`), the shortest prompt
(vLLM's /tokenize), and `distill enqueue` / `distill teacher check` refusing a --max-tokens no
prompt leaves room for."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from distill.cli import app
from distill.config import Settings, get_settings
from distill.db import session_scope
from distill.models import Question, Run
from distill.prompts import build_messages
from distill.teacher.budget import Budget, read_budget
from distill.teacher.client import OpenAITeacher
from tests.support.factories import add_questions
from tests.support.fake_openai import FakeOpenAIServer, prompt_tokens
from tests.support.messages import queued_job_ids
from tests.support.workers import TEACHER_QUEUE

runner = CliRunner()


def _teacher(url: str) -> OpenAITeacher:
    return OpenAITeacher(base_url=url, model="test-teacher", timeout=5, retries=1, backoff_max=0)


async def _budget(url: str, max_tokens: int) -> Budget:
    async with _teacher(url) as teacher:
        return await read_budget(teacher, max_tokens=max_tokens)


def test_reads_the_served_context_and_the_shortest_prompt() -> None:
    with FakeOpenAIServer(max_model_len=1024) as server:
        budget = asyncio.run(_budget(server.url, 512))
    assert budget.context == 1024
    assert budget.floor == prompt_tokens(build_messages("", [])[0]["content"])
    assert budget.refusal() is None


def test_a_server_that_reports_no_context_is_not_checked() -> None:
    with FakeOpenAIServer() as server:  # no max_model_len, no /tokenize
        budget = asyncio.run(_budget(server.url, 10**6))
    assert (budget.context, budget.floor, budget.refusal()) == (None, None, None)


def test_prompt_tokens_without_a_tokenize_endpoint_is_unknown() -> None:
    async def count(url: str) -> int | None:
        async with _teacher(url) as teacher:
            return await teacher.prompt_tokens(build_messages("Q?", ["a", "b"]))

    with FakeOpenAIServer() as server:
        assert asyncio.run(count(server.url)) is None
    with FakeOpenAIServer(max_model_len=64) as server:
        assert asyncio.run(count(server.url)) == prompt_tokens(
            build_messages("Q?", ["a", "b"])[0]["content"]
        )


@pytest.mark.parametrize(
    ("max_tokens", "floor", "refused"),
    [
        (1000, 24, False),
        (1001, 24, True),
        (1024, 24, True),
        (1023, None, False),
        (1024, None, True),
    ],
)
def test_refusal_rule(max_tokens: int, floor: int | None, refused: bool) -> None:
    budget = Budget("m", "http://x/v1", max_tokens, 1024, floor)
    refusal = budget.refusal()
    assert (refusal is not None) is refused
    if refusal is not None:
        assert "\n" not in refusal and "1024 tokens of context" in refusal
        assert f"--max-tokens {1024 - (floor or 1)} or less" in refusal


def test_long_prompt_warnings() -> None:
    budget = Budget("m", "http://x/v1", 600, 1024, 24)
    assert budget.long_prompt_warning(400) is None
    assert "leaves 524 of --max-tokens 600" in (budget.long_prompt_warning(500) or "")
    assert "will fail" in (budget.long_prompt_warning(1024) or "")


# --- the commands -------------------------------------------------------------------------------


@pytest.fixture
def served(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer("test-teacher", max_model_len=1024) as server:
        monkeypatch.setenv("DISTILL_TEACHER_URL", server.url)
        get_settings.cache_clear()
        yield server


def _runs(engine: Engine) -> int:
    with session_scope(engine) as s:
        return s.scalar(select(func.count(Run.id))) or 0


def test_enqueue_refuses_a_budget_no_prompt_fits(
    served: FakeOpenAIServer, engine: Engine, broker: redis.Redis
) -> None:
    add_questions(engine, 3)
    result = runner.invoke(app, ["enqueue", "--n", "3", "--max-tokens", "1020"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --max-tokens 1020 cannot fit")
    assert "serves 1024 tokens of context" in lines[0]
    assert _runs(engine) == 0 and broker.llen(TEACHER_QUEUE) == 0  # nothing made, nothing sent


def test_enqueue_warns_when_the_longest_prompt_cuts_the_budget(
    served: FakeOpenAIServer, engine: Engine, broker: redis.Redis
) -> None:
    add_questions(engine, 3)
    with session_scope(engine) as s:
        first = s.scalars(select(Question).order_by(Question.id)).first()
        assert first is not None
        first.question = "A long question. " * 200  # ~850 tokens by the fake's count
    result = runner.invoke(app, ["enqueue", "--n", "3", "--max-tokens", "900"])
    assert result.exit_code == 0, result.output
    assert "warning: the longest prompt of this run takes" in result.output
    assert "vLLM shortens such budgets" in result.output
    assert _runs(engine) == 1 and len(queued_job_ids(broker, TEACHER_QUEUE)) == 3


def test_enqueue_without_a_reachable_teacher_warns_and_goes_on(
    settings: Settings, engine: Engine, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILL_TEACHER_URL", "http://127.0.0.1:9/v1")
    get_settings.cache_clear()
    add_questions(engine, 2)
    result = runner.invoke(app, ["enqueue", "--n", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["jobs"] == 2
    assert "not checked against its context length" in result.stderr


def test_teacher_check_reports_and_refuses_the_budget(served: FakeOpenAIServer) -> None:
    ok = runner.invoke(app, ["teacher", "check", "--max-tokens", "512", "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert (report["max_model_len"], report["max_tokens"]) == (1024, 512)
    assert report["shortest_prompt_tokens"] > 0
    text = runner.invoke(app, ["teacher", "check", "--max-tokens", "512"])
    assert (
        "budget   max_tokens 512 of a 1024-token context leaves 512 for the prompt" in text.stdout
    )
    refused = runner.invoke(app, ["teacher", "check", "--max-tokens", "1024"])
    assert refused.exit_code == 1
    assert refused.output.startswith("error: teacher check failed: --max-tokens 1024 cannot fit")
    assert len(refused.output.strip().splitlines()) == 1


def test_the_unreachable_warning_hides_url_credentials(
    settings: Settings, engine: Engine, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILL_TEACHER_URL", "http://user:s3cret@127.0.0.1:9/v1")
    get_settings.cache_clear()
    add_questions(engine, 1)
    result = runner.invoke(app, ["enqueue", "--n", "1"])
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and "http://***@127.0.0.1:9/v1" in result.stderr
