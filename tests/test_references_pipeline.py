"""Options that refer to other options, from import to export: found and stored at import, kept
in their meaning by enqueue's shuffle and by export's re-permutation, counted in status and on
the dataset card. The data (tests/data/references/referring.jsonl) holds real-looking cases of
every kind, with what each referring option names."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from distill.choices import LETTERS, OptionOrder, OrderRule
from distill.cli import app
from distill.db import session_scope
from distill.export import export_dataset
from distill.importers import import_questions
from distill.jobs.enqueue import create_run
from distill.jobs.status import collect
from distill.models import Job, JobStatus, Question, Run, utcnow
from schemas.export import ExportOptions, OutputKind
from tests.support.factories import TEACHER, add_generation, add_questions

DATA = Path(__file__).parent / "data" / "references" / "referring.jsonl"
SOURCE = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]


def _import(engine: Engine) -> int:
    return import_questions(str(DATA), preset="mmlu", engine=engine).referring


def test_import_finds_and_stores_referring_options(engine: Engine) -> None:
    assert _import(engine) == sum(1 for row in SOURCE if row["expect"]["kind"] != "free")
    with session_scope(engine) as s:
        stored = {q.question: q for q in s.scalars(select(Question))}
    for row in SOURCE:
        question = stored[row["question"]]
        assert question.option_order == OptionOrder(row["expect"]["kind"]), row["question"]
        refs = question.option_refs or [None] * len(row["choices"])
        named = {row["choices"][i]: kind for i, kind in enumerate(refs) if kind}
        expected = dict.fromkeys(row["expect"].get("letters", {}), "letters")
        expected |= dict.fromkeys(row["expect"].get("above", []), "above")
        assert named == expected, row["question"]


def test_import_summary_counts_them(engine: Engine) -> None:
    result = CliRunner().invoke(app, ["import", str(DATA), "--preset", "mmlu"])
    assert result.exit_code == 0, result.output
    assert "12 with options that refer to other options" in result.output


def _presented(user_prompt: str) -> list[str]:
    """The options as the record's prompt shows them: the last block of "X. text" lines."""
    blocks = user_prompt.split("\n\n")
    lines = next(b for b in reversed(blocks) if re.match(r"^A\. ", b)).splitlines()
    options = []
    for i, line in enumerate(lines):
        assert line.startswith(f"{LETTERS[i]}. "), line
        options.append(line[3:])
    return options


def _check_record(record: dict[str, Any], source: dict[str, Any]) -> None:
    """Every record: the gold letter names the gold option as presented, and every referring
    option still names what it named in the source."""
    presented = _presented(record["prompt"][0]["content"])
    choices = source["choices"]
    assert sorted(presented) == sorted(choices)
    assert presented[LETTERS.index(record["answer"])] == choices[source["answer"]]
    for option, labels in source["expect"].get("letters", {}).items():
        for label in labels:
            i = LETTERS.index(label.upper())
            assert presented[i] == choices[i], (option, presented)
    for option in source["expect"].get("above", []):
        here, there = presented.index(option), choices.index(option)
        assert here == there, (option, presented)
        assert set(presented[:here]) == set(choices[:there]), (option, presented)


def _finish_all_correct(engine: Engine) -> None:
    """Every job done, answered with its own gold letter (as presented), as a worker would."""
    with session_scope(engine) as s:
        for job in s.scalars(select(Job).where(Job.status == JobStatus.queued)):
            job.status, job.finished_at, job.started_at = JobStatus.done, utcnow(), utcnow()
            add_generation(s, job=job, question=job.question, completion_tokens=30)


def test_every_exported_record_keeps_what_its_options_name(engine: Engine, tmp_path: Path) -> None:
    _import(engine)
    add_questions(engine, 120)  # questions that can move, so balance has something to work with
    with session_scope(engine) as s:
        plan = create_run(
            s, n=200, samples=3, teacher_model=TEACHER, params={}, max_tokens=512, seed=5
        )
    assert plan.questions == 120 + len(SOURCE)
    with session_scope(engine) as s:
        for job in s.scalars(select(Job)):
            rule = OrderRule.of(len(job.question.choices), job.question.option_refs)
            assert rule.allows(job.choice_order), (job.question.question, job.choice_order)
            if rule.kind is OptionOrder.fixed:
                assert job.choice_order == list(range(len(job.question.choices)))
    _finish_all_correct(engine)
    out = tmp_path / "both"
    manifest = export_dataset(
        options=ExportOptions(format="both", out=out, to=OutputKind.jsonl, val_size=20),
        engine=engine,
    )
    by_question = {row["question"]: row for row in SOURCE}
    checked: Counter[str] = Counter()
    for fmt in ("reasoning", "direct"):
        for path in sorted((out / fmt).glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                stem = record["prompt"][0]["content"].split("\n\nA. ")[0]
                if stem in by_question:
                    _check_record(record, by_question[stem])
                    checked[fmt] += 1
    assert checked["reasoning"] >= len(SOURCE) and checked["direct"] == len(SOURCE)
    # The direct format re-permuted records for balance, and did so around the references.
    assert "re-permuted" in manifest.outputs["direct"].balance
    assert manifest.referring_options == {"anchored": 6, "fixed": 6}
    card = (out / "direct" / "README.md").read_text(encoding="utf-8")
    assert "6 question(s) keep their original option order" in card


def test_status_counts_referring_questions(engine: Engine) -> None:
    _import(engine)
    with session_scope(engine) as s:
        create_run(s, n=3, samples=1, teacher_model=TEACHER, params={}, max_tokens=64)
        everything = collect(s)
    assert everything.referring_questions == {"anchored": 6, "fixed": 6}
    result = CliRunner().invoke(app, ["status"])
    assert "referring options" in result.output and "6 question(s) in original order" in (
        " ".join(result.output.split())
    )


def test_no_shuffle_keeps_every_order_and_is_recorded(engine: Engine) -> None:
    add_questions(engine, 20)
    with session_scope(engine) as s:
        plan = create_run(
            s, n=20, samples=2, teacher_model=TEACHER, params={}, max_tokens=64, shuffle=False
        )
    with session_scope(engine) as s:
        orders = s.scalars(select(Job.choice_order)).all()
        run = s.get(Run, plan.run_id)
        assert run is not None and run.params["shuffle"] is False
    assert all(order == list(range(4)) for order in orders)


def test_enqueue_cli_no_shuffle(settings: object, engine: Engine, monkeypatch: Any) -> None:
    import distill.jobs.publish as queue

    monkeypatch.setattr(queue, "publish", lambda ids, **_: len(list(ids)))
    add_questions(engine, 4)
    result = CliRunner().invoke(app, ["enqueue", "--n", "4", "--no-shuffle", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["shuffle"] is False
    with session_scope(engine) as s:
        assert set(map(tuple, s.scalars(select(Job.choice_order)))) == {(0, 1, 2, 3)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_run_balance_holds_with_references_in_it(engine: Engine, seed: int) -> None:
    # Stored answers all "A"; one question in ten keeps its order (its gold stays at A).
    add_questions(engine, 600)
    with session_scope(engine) as s:
        s.execute(Question.__table__.update().values(answer_index=0))
        s.execute(
            Question.__table__.update()
            .where(Question.id % 10 == 0)
            .values(option_refs=[None, None, "letters", None], option_order="fixed")
        )
    with session_scope(engine) as s:
        create_run(s, n=600, samples=2, teacher_model=TEACHER, params={}, max_tokens=64, seed=seed)
    with session_scope(engine) as s:
        rows = s.execute(select(Job.choice_order, Question.answer_index).join(Question)).all()
    letters = Counter(LETTERS[order.index(answer)] for order, answer in rows)
    for letter in "ABCD":
        assert abs(letters[letter] / len(rows) - 0.25) <= 0.02, letters
