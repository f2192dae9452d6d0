"""Bad input: one line naming file, row and field, and nothing imported; or, with skip_invalid,
the valid rows imported and the rest reported."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from distill.errors import UserError
from distill.importers import FieldMapping, InvalidRowError, load_mcqs

GOOD: dict[str, Any] = {
    "question": "Capital of France?",
    "choices": ["Paris", "Rome", "Oslo", "Bern"],
    "answer": 0,
}


def _file(tmp_path: Path, bad_line: str) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + bad_line + "\n", encoding="utf-8")
    return path


def _bad(**changes: Any) -> str:
    row = {**GOOD, **changes}
    return json.dumps({k: v for k, v in row.items() if v is not ...})


BAD_ROWS = [
    (
        '{"question": "x", "choices": ["a", "b"]',
        None,
        "invalid JSON: Expecting ',' delimiter at column 40",
    ),
    ("[1, 2]", None, "expected an object, got a list"),
    (_bad(answer=...), "answer", "missing"),
    (_bad(question=...), "question", "missing"),
    (_bad(choices=...), "choices", "missing"),
    (_bad(question="   "), "question", "empty"),
    (_bad(question=42), "question", "expected text, got int 42"),
    (_bad(answer="E"), "answer", "'E' is not one of the 4 options"),
    (_bad(answer="(e)"), "answer", "'(e)' is not one of the 4 options"),
    (_bad(answer=4), "answer", "index 4 is out of range for 4 options (indices are 0-based)"),
    (_bad(answer="Lima"), "answer", "'Lima' is not one of the 4 options"),
    (
        # Duplicates after whitespace and Unicode normalisation only; the message quotes the
        # option as compared.
        _bad(choices=["Paris", "Rome", " Paris  "]),
        "choices",
        "duplicate options: A and C are both 'Paris'",
    ),
    (
        _bad(choices=["Café", "Rome", "Cafe\u0301"]),
        "choices",
        "duplicate options: A and C are both 'Café'",
    ),
    (_bad(choices=["Paris"]), "choices", "1 option; a question needs 2 to 10"),
    (_bad(choices=[]), "choices", "0 options; a question needs 2 to 10"),
    (_bad(choices=[f"o{i}" for i in range(11)]), "choices", "11 options; at most 10"),
    (_bad(choices=["Paris", " ", "Oslo"]), "choices", "option B is empty"),
    (_bad(choices=["Paris", None]), "choices", "option B is empty"),
    (_bad(choices=["Paris", {"x": 1}]), "choices", "option B is dict, not text"),
    (
        _bad(choices="Paris"),
        "choices",
        "expected a list of options (for one option per column, name every column)",
    ),
    (_bad(choices="[Paris"), "choices", "expected a list of options; this text is not a JSON list"),
    (_bad(subject="s" * 129), "subject", "longer than 128 characters"),
]


@pytest.mark.parametrize(("line", "field", "error"), BAD_ROWS)
def test_bad_row_is_one_line_naming_file_row_and_field(
    tmp_path: Path, line: str, field: str | None, error: str
) -> None:
    path = _file(tmp_path, line)
    with pytest.raises(InvalidRowError) as info:
        load_mcqs(str(path))
    where = f"field {field!r}: " if field else ""
    assert str(info.value) == f"{path}: row 2: {where}{error}"
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("line", "field", "error"), BAD_ROWS)
def test_skip_invalid_keeps_good_rows_and_reports_the_bad(
    tmp_path: Path, line: str, field: str | None, error: str
) -> None:
    result = load_mcqs(str(_file(tmp_path, line)), skip_invalid=True)
    assert [r.question for r in result.records] == [GOOD["question"]]
    [rejection] = result.rejected
    assert (rejection.row, rejection.field, rejection.error) == (2, field, error)
    original = line if field is None and "invalid JSON" in error else json.loads(line)
    assert rejection.record == original


def test_csv_errors_name_the_option_column_and_data_row(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["question", "A", "B", "C", "key"])
        writer.writerow(["Q one?", "x", "y", "z", "A"])
        writer.writerow(["Q two?", "x", "y", "x ", "B"])
    mapping = FieldMapping(choices=("A", "B", "C"), answer="key")
    with pytest.raises(UserError) as info:
        load_mcqs(str(path), mapping=mapping)
    assert str(info.value) == f"{path}: row 2: field 'C': duplicate options: A and C are both 'x'"


def test_csv_row_with_a_gap_between_options(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("question,A,B,C,key\nQ?,x,,z,A\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"row 1: field 'B': option B is empty$"):
        load_mcqs(str(path), mapping=FieldMapping(choices=("A", "B", "C"), answer="key"))


def test_labels_that_do_not_match_the_texts(tmp_path: Path) -> None:
    row = {
        "question": "Q?",
        "choices": {"text": ["a", "b", "c"], "label": ["A", "B"]},
        "answerKey": "A",
    }
    path = tmp_path / "arc.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(
        UserError, match=r"row 1: field 'choices': 3 option texts but labels \['A', 'B'\]"
    ):
        load_mcqs(str(path))


def test_empty_constant_subject_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="subject must not be empty"):
        load_mcqs(str(_file(tmp_path, json.dumps(GOOD))), subject="  ")


def test_options_that_differ_only_in_case_import(tmp_path: Path) -> None:
    rows = [
        {"question": "Which genotype?", "choices": ["BB Bb", "Bb Bb", "bb Bb"], "answer": "Bb Bb"},
        {"question": "Which numeral?", "choices": ["II", "ii", "iii"], "answer": "ii"},
        {"question": "Translate.", "choices": ["Sc ≡ Ej", "sC ≡ eJ", "Cse"], "answer": 1},
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    records = load_mcqs(str(path)).records
    assert [r.answer_index for r in records] == [1, 1, 1]
    assert [r.choices for r in records] == [row["choices"] for row in rows]
