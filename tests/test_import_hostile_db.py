"""Hostile input against the real database, SQLite or PostgreSQL (DISTILL_TEST_DATABASE): NUL is
refused before it reaches either, identically, and `distill import` answers every hostile file
with one line on stderr, exit code 1 and nothing imported; never a traceback."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from distill.cli import app
from distill.errors import UserError
from distill.importers import InvalidRowError, LoadResult, import_questions, store
from distill.importers.limits import MAX_FIELD_CHARS
from distill.models import Question
from schemas.mcq import MCQRecord

GOOD: dict[str, Any] = {"question": "Capital of France?", "choices": ["Paris", "Rome"], "answer": 0}
NUL = "contains a NUL character (U+0000), which text may not hold"


def _count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Question)) or 0


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_nul_is_refused_the_same_on_either_backend(tmp_path: Path, engine: Engine) -> None:
    bad = {"question": "Capital of\x00 Italy?", "choices": ["Rome", "Paris"], "answer": 0}
    path = _jsonl(tmp_path / "q.jsonl", [GOOD, bad, dict(GOOD, question="Capital of Spain?")])
    with pytest.raises(InvalidRowError) as info:
        import_questions(str(path), engine=engine)
    assert str(info.value) == f"{path}: row 2: field 'question': {NUL}"
    assert _count(engine) == 0

    report = import_questions(str(path), skip_invalid=True, engine=engine)
    assert (report.inserted, report.rejected) == (2, 1)
    assert report.report_path is not None
    [rejected] = [json.loads(line) for line in report.report_path.read_text().splitlines()]
    assert (rejected["row"], rejected["field"], rejected["record"]) == (2, "question", bad)
    with Session(engine) as session:
        assert not any("\x00" in q for q in session.scalars(select(Question.question)))


def test_the_schema_rule_is_what_keeps_nul_out(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past validation (a record built without it), PostgreSQL refuses NUL and SQLite stores it:
    hence the rule in MCQRecord. PostgreSQL's refusal is still one line, not a traceback."""
    record = MCQRecord.model_construct(
        question="Q\x00?", choices=["a", "b"], answer_index=0, subject="unknown", source="q.jsonl"
    )
    with pytest.raises(ValueError, match="NUL"):
        MCQRecord(question="Q\x00?", choices=["a", "b"], answer_index=0)
    loaded = LoadResult(records=[record], source="q.jsonl", rows_read=1)
    monkeypatch.setattr(store, "load_mcqs", lambda *args, **kwargs: loaded)
    if engine.dialect.name == "postgresql":
        with pytest.raises(UserError) as info:
            import_questions("q.jsonl", engine=engine)
        assert str(info.value) == (
            "q.jsonl: the database refused a question (PostgreSQL text fields cannot contain "
            "NUL (0x00) bytes); nothing imported"
        )
        assert _count(engine) == 0
    else:
        assert engine.dialect.name == "sqlite"
        assert import_questions("q.jsonl", engine=engine).inserted == 1


any_text = st.text(st.characters(codec=None, categories=None), min_size=1, max_size=12)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.tuples(any_text, st.lists(any_text, min_size=2, max_size=4)), max_size=6))
def test_any_text_is_stored_as_read_or_rejected(
    tmp_path: Path, engine: Engine, questions: list[tuple[str, list[str]]]
) -> None:
    """Text with any code point in it (NUL, lone surrogates, line separators): every row is
    stored as read, or rejected; the database never refuses what validation let through."""
    with Session(engine) as session, session.begin():
        session.execute(delete(Question))
    rows = [{"question": q, "choices": c, "answer": 0} for q, c in questions]
    path = _jsonl(tmp_path / "q.jsonl", [GOOD, *rows])  # ASCII JSON: surrogates as escapes
    report = import_questions(str(path), skip_invalid=True, engine=engine)
    assert report.rows_read == len(rows) + 1
    with Session(engine) as session:
        stored = session.scalars(select(Question)).all()
    assert len(stored) == report.inserted
    for question in stored:
        assert "\x00" not in question.question + "".join(question.choices)
        question.question.encode("utf-8")  # no lone surrogates


# ---- the command line ----------------------------------------------------------------------------


_GOOD_LINE = (json.dumps(GOOD) + "\n").encode()
_PACKED = gzip.compress(_GOOD_LINE * 1000)
# File name -> content, and how the error line goes on after `error: <path>: `.
HOSTILE = {
    "deep.jsonl": (_GOOD_LINE + b"[" * 100_000 + b"]" * 100_000 + b"\n", "row 2: JSON nested"),
    "nul.jsonl": (_GOOD_LINE + json.dumps(dict(GOOD, question="\x00")).encode(), "row 2: field"),
    "long.jsonl": (
        _GOOD_LINE + json.dumps(dict(GOOD, question="Q" * (MAX_FIELD_CHARS + 1))).encode(),
        "row 2: field 'question': 131073 characters, over the limit",
    ),
    "cut.jsonl.gz": (_PACKED[: len(_PACKED) // 2], "row "),
    "bytes.json": (b'[{"question": "\xff"}]', "not UTF-8 text (byte 15)"),
    "deep.json": (b"[" * 100_000, "row 1: JSON nested more than 100 levels deep"),
    "cut.parquet": (b"PAR1" + bytes(100), "not a readable Parquet file"),
    "empty.csv": (b"", "no rows to import"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_distill_import_answers_hostile_files_in_one_line(
    tmp_path: Path, engine: Engine, name: str
) -> None:
    content, start = HOSTILE[name]
    path = tmp_path / name
    path.write_bytes(content)
    result = CliRunner().invoke(app, ["import", str(path)])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {path}: {start}")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert _count(engine) == 0


def test_skip_invalid_imports_the_rest_of_a_hostile_file(tmp_path: Path, engine: Engine) -> None:
    rows = [
        json.dumps(GOOD),
        "[" * 100_000 + "]" * 100_000,
        json.dumps(dict(GOOD, question="Capital\x00?")),
        json.dumps(dict(GOOD, question="Q" * 10_000_000)),
        '{"question": "\\udfff", "choices": ["a", "b"], "answer": 0}',
        json.dumps(dict(GOOD, question="Capital of Spain?")),
    ]
    path = tmp_path / "q.jsonl"
    path.write_bytes(("\n".join(rows) + "\n").encode() + b'{"question": "\xff"}\n')
    report_path = tmp_path / "rejected.jsonl"
    result = CliRunner().invoke(
        app, ["import", str(path), "--skip-invalid", "--report", str(report_path)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        f"2 inserted, 0 duplicates skipped, 5 rejected (see {report_path})\n"
    )
    lines = report_path.read_text(encoding="utf-8").split("\n")[:-1]
    assert [json.loads(line)["row"] for line in lines] == [2, 3, 4, 5, 7]
    assert max(len(line) for line in lines) < 3000  # long values are cut in the report
    assert _count(engine) == 2
