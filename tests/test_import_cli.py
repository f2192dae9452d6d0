"""`distill import` in-process: summary line, --json, --skip-invalid, and bad input as one line on
stderr with a non-zero exit and nothing imported."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

import distill.cli
from distill.cli import app
from distill.models import Question

DATA = Path(__file__).parent / "data" / "import"
BAD_ROW = {"question": "Which?", "choices": ["a", "b", "c", "d"], "answer": "E"}


def _app() -> typer.Typer:
    """The full `distill` app, with its commands registered as `distill.cli.main` does."""
    return app


def _count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Question)) or 0


def _bad_file(tmp_path: Path) -> Path:
    good = json.loads((DATA / "mmlu.jsonl").read_text().splitlines()[0])
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(good | BAD_ROW) + "\n", encoding="utf-8")
    return path


def test_summary_line_and_reimport(engine: Engine) -> None:
    runner = CliRunner()
    first = runner.invoke(_app(), ["import", str(DATA / "mmlu.jsonl")])
    assert first.exit_code == 0, first.output
    assert first.output == "mmlu.jsonl: 3 rows read as mmlu; 3 inserted, 0 duplicates skipped\n"
    again = runner.invoke(_app(), ["import", str(DATA / "mmlu.jsonl")])
    assert again.output == (
        "mmlu.jsonl: 3 rows read as mmlu; 0 inserted, 3 duplicates skipped "
        "(3 already in the database)\n"
    )
    assert _count(engine) == 3


def test_json_summary(engine: Engine) -> None:
    result = CliRunner().invoke(_app(), ["import", str(DATA / "sciq.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary == {
        "source": "sciq.jsonl",
        "preset": "sciq",
        "rows_read": 4,
        "inserted": 4,
        "duplicates": 0,
        "duplicates_in_source": 0,
        "already_present": 0,
        "rejected": 0,
        "report_path": None,
        "referring": 0,
    }


def test_field_options(tmp_path: Path, engine: Engine) -> None:
    path = tmp_path / "q.csv"
    path.write_text("Frage,A,B,C,Lösung\nWie viel ist 2+2?,3,4,5,b\n", encoding="utf-8")
    args = ["import", str(path), "--question-field", "Frage", "--choices-field", "A, B, C"]
    args += ["--answer-field", "Lösung", "--subject", "mathe"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    with Session(engine) as session:
        question = session.scalars(select(Question)).one()
    assert (question.choices, question.answer_index, question.subject) == (
        ["3", "4", "5"],
        1,
        "mathe",
    )


def test_bad_row_exits_non_zero_naming_file_row_and_field(tmp_path: Path, engine: Engine) -> None:
    path = _bad_file(tmp_path)
    result = CliRunner().invoke(_app(), ["import", str(path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {path}: row 2: field 'answer': 'E' is not one of the 4 options; "
        "nothing imported (--skip-invalid imports the rest)\n"
    )
    assert "Traceback" not in result.output
    assert _count(engine) == 0


def test_entry_point_exits_non_zero_and_imports_nothing(
    tmp_path: Path,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Through distill.cli.main, as a user runs it."""
    path = _bad_file(tmp_path)
    monkeypatch.setattr(sys, "argv", ["distill", "import", str(path)])
    with pytest.raises(SystemExit) as info:
        distill.cli.main()
    assert info.value.code == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {path}: row 2: field 'answer': ")
    assert err.count("\n") == 1
    assert _count(engine) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "missing.jsonl: no such file or directory"),
        (
            ["--subject", "x", "--subject-field", "y", "q"],
            "give either --subject or --subject-field, not both",
        ),
        (["q", "--choices-field", "A,,C"], "--choices-field 'A,,C': empty column name"),
        (
            ["q", "--report", "r.jsonl"],
            "--report names where --skip-invalid writes rejected rows; add --skip-invalid",
        ),
    ],
)
def test_other_user_errors(args: list[str], message: str, engine: Engine) -> None:
    result = CliRunner().invoke(_app(), ["import", *args])
    assert result.exit_code == 1
    assert result.stderr == f"error: {message}\n"


def test_option_values_are_checked_by_the_parser() -> None:
    result = CliRunner().invoke(_app(), ["import", "q.jsonl", "--preset", "gpqa"])
    assert result.exit_code == 2
    assert "'gpqa' is not one of" in result.output


def test_skip_invalid_reports_rejections(tmp_path: Path, engine: Engine) -> None:
    path = _bad_file(tmp_path)
    report = tmp_path / "rejects.jsonl"
    result = CliRunner().invoke(
        _app(), ["import", str(path), "--skip-invalid", "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.endswith(f"1 inserted, 0 duplicates skipped, 1 rejected (see {report})\n")
    [line] = report.read_text().splitlines()
    rejection = json.loads(line)
    assert (rejection["row"], rejection["field"]) == (2, "answer")
    assert rejection["error"] == "'E' is not one of the 4 options"
    assert rejection["record"]["answer"] == "E"
    assert _count(engine) == 1


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(_app(), ["import", "--help"])
    assert result.exit_code == 0
    assert "distill import" in result.output
    assert "--skip-invalid" in result.output
