"""Budgets against a real vLLM server: its `max_model_len` and `/tokenize`, and the commands
that refuse a --max-tokens no prompt fits."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.config import get_settings
from distill.prompts import build_messages
from distill.teacher.budget import read_budget
from distill.teacher.client import OpenAITeacher
from distill.teacher.server import TeacherServer

pytestmark = pytest.mark.vllm
cli = CliRunner()


def test_reads_the_served_context_and_prompt_tokens(vllm_server: TeacherServer) -> None:
    async def read() -> tuple[int | None, int | None, int | None]:
        async with OpenAITeacher(
            base_url=vllm_server.base_url,
            model=vllm_server.model,
            timeout=30,
            retries=1,
            backoff_max=0,
        ) as teacher:
            budget = await read_budget(teacher, max_tokens=96)
            longer = await teacher.prompt_tokens(build_messages("What is 2 + 2?", ["3", "4"]))
            return budget.context, budget.floor, longer

    context, floor, longer = asyncio.run(read())
    assert context == 1024  # DISTILL_SERVE_MAX_MODEL_LEN of the tier
    assert floor is not None and longer is not None and 0 < floor < longer
    counted = httpx.post(
        f"{vllm_server.root_url}/tokenize",
        json={"model": vllm_server.model, "messages": build_messages("", [])},
    ).json()["count"]
    assert floor == counted


def test_teacher_check_refuses_a_budget_beyond_the_context(
    vllm_server: TeacherServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILL_TEACHER_URL", vllm_server.base_url)
    monkeypatch.setenv("DISTILL_TEACHER_MODEL", vllm_server.model)
    get_settings.cache_clear()
    ok = cli.invoke(app, ["teacher", "check", "--max-tokens", "96"])
    assert ok.exit_code == 0, ok.output
    assert "of a 1024-token context" in ok.stdout
    refused = cli.invoke(app, ["teacher", "check", "--max-tokens", "1024"])
    assert refused.exit_code == 1
    assert refused.output.startswith("error: teacher check failed: --max-tokens 1024 cannot fit")
    get_settings.cache_clear()
