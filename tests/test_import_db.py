"""import_questions against the real database (SQLite or PostgreSQL): stored rows, dedup within
the source and against the table, idempotent re-import, all-or-nothing, rejection reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from distill.errors import UserError
from distill.importers import import_questions, load_mcqs, store
from distill.models import Question

DATA = Path(__file__).parent / "data" / "import"


def _count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Question)) or 0


def _write(path: Path, rows: list[Any]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _rows(n: int, *, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"question": f"What is {i} + 1?", "choices": [str(i + 1), str(i + 2), str(i)], "answer": 0}
        for i in range(start, start + n)
    ]


def test_import_stores_questions(engine: Engine) -> None:
    report = import_questions(str(DATA / "mmlu.jsonl"), engine=engine)
    assert (report.inserted, report.duplicates, report.rejected) == (3, 0, 0)
    assert (report.source, report.preset, report.rows_read) == ("mmlu.jsonl", "mmlu", 3)
    expected = {r.uid: r for r in load_mcqs(str(DATA / "mmlu.jsonl")).records}
    with Session(engine) as session:
        stored = session.scalars(select(Question).order_by(Question.id)).all()
    assert [q.uid for q in stored] == list(expected)
    first = stored[0]
    assert (first.source, first.subject, first.answer_index) == (
        "mmlu.jsonl",
        "abstract_algebra",
        1,
    )
    assert first.choices == ["0", "4", "2", "6"]
    assert first.created_at.tzinfo is not None


def test_reimport_adds_nothing(engine: Engine) -> None:
    import_questions(str(DATA / "arc.jsonl"), engine=engine)
    again = import_questions(str(DATA / "arc.jsonl"), engine=engine)
    assert (again.inserted, again.already_present, again.duplicates_in_source) == (0, 3, 0)
    assert _count(engine) == 3


def test_duplicates_within_a_source_are_counted_once(tmp_path: Path, engine: Engine) -> None:
    row = {"question": "Capital of France?", "choices": ["Paris", "Rome"], "answer": "Paris"}
    # Same content with options reordered and spacing changed: same uid.
    twin = {"question": "Capital  of France? ", "choices": ["Rome", "Paris"], "answer": "B"}
    report = import_questions(_write(tmp_path / "q.jsonl", [row, twin, row]), engine=engine)
    assert (report.inserted, report.duplicates_in_source, report.already_present) == (1, 2, 0)
    assert _count(engine) == 1


def test_overlapping_files_add_only_new_questions(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "INSERT_CHUNK", 3)  # several round trips
    import_questions(_write(tmp_path / "a.jsonl", _rows(10)), engine=engine)
    report = import_questions(_write(tmp_path / "b.jsonl", _rows(15, start=5)), engine=engine)
    assert (report.inserted, report.already_present) == (10, 5)
    assert _count(engine) == 20
    with Session(engine) as session:
        sources = dict(
            session.execute(select(Question.source, func.count()).group_by(Question.source)).all()
        )
    assert sources == {"a.jsonl": 10, "b.jsonl": 10}


def test_one_bad_row_imports_nothing(tmp_path: Path, engine: Engine) -> None:
    rows = [*_rows(50), {"question": "Broken?", "choices": ["a", "b"], "answer": "C"}]
    path = _write(tmp_path / "q.jsonl", rows)
    with pytest.raises(
        UserError, match=r"q.jsonl: row 51: field 'answer': 'C' is not one of the 2"
    ):
        import_questions(path, engine=engine)
    assert _count(engine) == 0
    assert not (tmp_path / "q.rejected.jsonl").exists()


def test_a_database_failure_mid_import_rolls_everything_back(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "INSERT_CHUNK", 5)
    calls = 0
    real_row = store.question_row

    def failing_row(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls > 12:  # two chunks are already inserted by now
            raise RuntimeError("connection lost")
        return real_row(*args, **kwargs)

    monkeypatch.setattr(store, "question_row", failing_row)
    with pytest.raises(RuntimeError):
        import_questions(_write(tmp_path / "q.jsonl", _rows(20)), engine=engine)
    assert _count(engine) == 0


def test_skip_invalid_writes_the_default_report(tmp_path: Path, engine: Engine) -> None:
    # The settings fixture runs each test in tmp_path, so the default report lands there.
    bad = {"question": "Q?", "choices": ["a", "a"], "answer": 0}
    rows: list[Any] = [*_rows(3), bad, "not an object"]
    report = import_questions(_write(tmp_path / "q.jsonl", rows), skip_invalid=True, engine=engine)
    assert (report.inserted, report.rejected) == (3, 2)
    assert report.report_path == Path.cwd() / "q.rejected.jsonl"
    lines = [json.loads(line) for line in report.report_path.read_text().splitlines()]
    assert lines == [
        {
            "row": 4,
            "field": "choices",
            "error": "duplicate options: A and B are both 'a'",
            "record": bad,
        },
        {
            "row": 5,
            "field": None,
            "error": "expected an object, got a string",
            "record": "not an object",
        },
    ]
    assert _count(engine) == 3


def test_skip_invalid_with_an_explicit_report_path(tmp_path: Path, engine: Engine) -> None:
    rows = [*_rows(2), {"question": "", "choices": ["a", "b"], "answer": 0}]
    target = tmp_path / "out" / "rejects.jsonl"
    target.parent.mkdir()
    report = import_questions(
        _write(tmp_path / "q.jsonl", rows), skip_invalid=True, report_path=target, engine=engine
    )
    assert report.report_path == target
    assert json.loads(target.read_text())["field"] == "question"


def test_clean_skip_invalid_import_writes_no_report(tmp_path: Path, engine: Engine) -> None:
    report = import_questions(
        _write(tmp_path / "q.jsonl", _rows(2)), skip_invalid=True, engine=engine
    )
    assert report.report_path is None
    assert not list(tmp_path.glob("*.rejected.jsonl"))


def test_constant_subject_and_limit(tmp_path: Path, engine: Engine) -> None:
    report = import_questions(
        _write(tmp_path / "q.jsonl", _rows(10)), subject="arithmetic", limit=4, engine=engine
    )
    assert report.inserted == 4
    with Session(engine) as session:
        assert set(session.scalars(select(Question.subject))) == {"arithmetic"}


def test_progress_reports_both_phases(tmp_path: Path, engine: Engine) -> None:
    seen: list[tuple[str, int, int | None]] = []
    import_questions(
        _write(tmp_path / "q.jsonl", _rows(2500)),
        engine=engine,
        progress=lambda phase, done, total: seen.append((phase, done, total)),
    )
    assert ("read", 1000, 2500) in seen
    assert seen[-1] == ("insert", 2500, 2500)


def test_backends_without_on_conflict_look_existing_uids_up(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_questions(_write(tmp_path / "a.jsonl", _rows(10)), engine=engine)
    monkeypatch.setattr(store, "_inserter", lambda session: None)
    monkeypatch.setattr(store, "LOOKUP_CHUNK", 4)  # the look-up spans several queries
    report = import_questions(_write(tmp_path / "b.jsonl", _rows(15, start=5)), engine=engine)
    assert (report.inserted, report.already_present) == (10, 5)
    assert _count(engine) == 20
