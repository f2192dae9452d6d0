"""The whole pipeline on a real vLLM engine: import → enqueue (25 questions × 4 samples) → a real
Celery worker → status → export in both formats, with the tiny R1-format teacher on CPU."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from distill.assets import SAMPLE_QUESTIONS
from distill.cli import app
from distill.config import Settings, get_settings
from distill.db import session_scope
from distill.models import Generation, Job, JobStatus
from distill.teacher.server import TeacherServer
from tests.support.workers import Worker, count, redis_db, wait_until

pytestmark = pytest.mark.vllm
cli = CliRunner()

QUESTIONS = SAMPLE_QUESTIONS
# A budget the tiny teacher's long chains run past (its model card: distill/assets/tiny_teacher).
MAX_TOKENS = 96


@pytest.fixture
def pipeline(
    settings: Settings, vllm_server: TeacherServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, str]]:
    with redis_db() as broker:
        env = {
            "DISTILL_DATABASE_URL": settings.database_url,
            "DISTILL_BROKER_URL": broker,
            "DISTILL_TEACHER_URL": vllm_server.base_url,
            "DISTILL_TEACHER_MODEL": vllm_server.model,
            "DISTILL_MAX_TOKENS": str(MAX_TOKENS),
            "DISTILL_REQUEST_TIMEOUT": "300",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        worker = Worker(env, tmp_path / "worker.log", concurrency=32)
        try:
            yield {"log": str(worker.log)}
        finally:
            worker.stop()


def test_import_enqueue_work_status_export(
    pipeline: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    imported = cli.invoke(app, ["import", str(QUESTIONS), "--preset", "mmlu"])
    assert imported.exit_code == 0, imported.output
    enq = cli.invoke(app, ["enqueue", "--n", "25", "--samples", "4", "--json"])
    assert enq.exit_code == 0, enq.output
    assert json.loads(enq.stdout)["jobs"] == 100

    log = Path(pipeline["log"])
    wait_until(
        lambda: count(engine, JobStatus.done, JobStatus.failed) == 100,
        timeout=900,
        what="100 jobs final on the real teacher",
        on_fail=lambda: "\n".join(log.read_text(errors="replace").splitlines()[-40:]),
    )
    status = json.loads(cli.invoke(app, ["status", "--json"]).output)
    assert status["jobs"]["queued"] == status["jobs"]["running"] == 0
    assert status["jobs"]["done"] == 100, status
    outcomes = status["outcomes"]
    assert outcomes["correct"] > 0 and outcomes["incorrect"] > 0 and outcomes["truncated"] > 0, (
        outcomes
    )

    with session_scope(engine) as s:
        rows = s.execute(select(Generation, Job).join(Job)).all()
        for gen, job in rows:
            # The whole exchange is stored, from the real server.
            assert gen.teacher_model == "tiny-teacher"
            assert gen.request["params"]["max_tokens"] == MAX_TOKENS
            assert "seed" not in gen.request["params"]
            assert gen.completion_tokens is not None and gen.completion_tokens <= MAX_TOKENS
            if gen.finish_reason == "length":
                assert gen.outcome.value == "truncated"
            # The R1-style template opened the think block itself.
            assert gen.response_shape in ("open_tag_omitted", "no_marker", "tagged")
            assert job.attempts == 1

    out = tmp_path / "export"
    exported = cli.invoke(
        app, ["export", "--format", "both", "--out", str(out), "--to", "jsonl", "--json"]
    )
    assert exported.exit_code == 0, exported.output
    splits: dict[str, dict[str, set[str]]] = {}
    for fmt in ("reasoning", "direct"):
        splits[fmt] = {}
        for split in ("train", "validation"):
            path = out / fmt / f"{split}.jsonl"
            records = (
                [json.loads(line) for line in path.read_text().splitlines()]
                if path.exists()
                else []
            )
            splits[fmt][split] = {r["question_id"] for r in records}
            for r in records:
                content = r["messages"][-1]["content"]
                assert content.endswith(f"The answer is {r['answer']}.")
                if fmt == "reasoning":
                    assert content.count("<think>") == 1 and content.count("</think>") == 1
                    assert content.index("<think>") < content.index("</think>")
                    tail = content.split("</think>", 1)[1]
                    assert tail.strip() == f"The answer is {r['answer']}."
        assert not splits[fmt]["train"] & splits[fmt]["validation"]
        assert (out / fmt / "README.md").is_file()
    assert splits["direct"]["train"] or splits["direct"]["validation"]
    # Same question, same split, in both formats.
    for split in ("train", "validation"):
        assert splits["reasoning"][split] <= splits["direct"][split]
    # Every correct reasoning record comes from a correct, closed, stopped generation.
    reasoning_total = sum(len(v) for v in splits["reasoning"].values())
    assert 0 < reasoning_total <= outcomes["correct"]
