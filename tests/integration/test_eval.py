"""`distill eval` against the tiny teacher on a real vLLM engine: every question answered, the
reading rules hold on real output (no letter from an unclosed block), and the termination
figures add up with what the server reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from distill.assets import SAMPLE_QUESTIONS
from distill.choices.letters import LETTERS
from distill.cli import app
from distill.config import Settings
from distill.db import session_scope
from distill.models import EvalItem
from distill.prompts import render_student_prompt
from distill.teacher.server import TeacherServer

pytestmark = pytest.mark.vllm


def _split(directory: Path) -> Path:
    """The sample questions as an exported validation split (the student prompt, gold letter in
    the original order)."""
    directory.mkdir(parents=True)
    lines = []
    for i, line in enumerate(SAMPLE_QUESTIONS.read_text().splitlines()):
        q = json.loads(line)
        prompt = render_student_prompt(
            q["question"], q["choices"], answer_example="The answer is X."
        )
        record = {
            "id": f"r{i}",
            "question_id": f"q{i}",
            "subject": q["subject"],
            "prompt": [{"role": "user", "content": prompt}],
            "answer": LETTERS[q["answer"]],
        }
        lines.append(json.dumps(record) + "\n")
    (directory / "validation.jsonl").write_text("".join(lines))
    return directory


def test_eval_reads_a_real_engine_as_the_grader_does(
    vllm_server: TeacherServer, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    data = _split(tmp_path / "reasoning")
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--data",
            str(data),
            "--url",
            vllm_server.base_url,
            "--model",
            vllm_server.model,
            "--max-tokens",
            "96",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["answered"] == report["questions"] == 40 and report["finished"]
    assert report["stopped"]["k"] + report["cut"]["k"] == 40  # vLLM says stop or length
    assert 0 < report["closed"]["k"] < 40  # the tiny teacher loops past 96 tokens at times
    assert report["terminated"]["k"] <= report["closed"]["k"]
    assert report["completion_tokens"]["max"] <= 96
    with session_scope(engine) as session:
        items = list(session.scalars(select(EvalItem)))
    assert len(items) == 40
    # Never a letter from a block that did not close, whatever the text says.
    assert all(i.letter is None for i in items if not i.closed)
    assert any(i.letter is not None for i in items)
