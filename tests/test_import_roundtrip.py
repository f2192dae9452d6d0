"""Property: any valid question written as JSONL, JSON, CSV or Parquet reads back as the record
the schema makes of it, whatever characters its text holds."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from distill.choices import LETTERS
from distill.importers import FieldMapping, load_mcqs
from schemas.mcq import MCQRecord, normalise_text

text = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())


@st.composite
def questions(draw: st.DrawFn) -> dict[str, Any]:
    choices = draw(
        st.lists(text, min_size=2, max_size=10, unique_by=lambda s: normalise_text(s).casefold())
    )
    row = {
        "question": draw(text),
        "choices": choices,
        "answer": draw(st.integers(0, len(choices) - 1)),
        "subject": draw(st.text(max_size=20)),
    }
    try:
        MCQRecord(question=row["question"], choices=choices, answer_index=row["answer"])
    except ValidationError:
        assume(False)
    return row


def _expected(rows: list[dict[str, Any]], source: str) -> list[MCQRecord]:
    return [
        MCQRecord(
            question=r["question"],
            choices=r["choices"],
            answer_index=r["answer"],
            subject=r["subject"],
            source=source,
        )
        for r in rows
    ]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["question", *LETTERS, "key", "subject"])
        for r in rows:
            cells = r["choices"] + [""] * (len(LETTERS) - len(r["choices"]))
            writer.writerow([r["question"], *cells, LETTERS[r["answer"]], r["subject"]])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(questions(), min_size=1, max_size=5))
def test_every_format_reads_back_what_was_written(rows: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jsonl = folder / "q.jsonl"
        jsonl.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
        assert load_mcqs(str(jsonl)).records == _expected(rows, "q.jsonl")

        as_json = folder / "q.json"
        as_json.write_text(json.dumps({"data": rows}), encoding="utf-8")
        assert load_mcqs(str(as_json)).records == _expected(rows, "q.json")

        parquet = folder / "q.parquet"
        pq.write_table(pa.Table.from_pylist(rows), parquet)
        assert load_mcqs(str(parquet)).records == _expected(rows, "q.parquet")

        as_csv = folder / "q.csv"
        _write_csv(as_csv, rows)
        mapping = FieldMapping(choices=tuple(LETTERS), answer="key")
        assert load_mcqs(str(as_csv), mapping=mapping).records == _expected(rows, "q.csv")
