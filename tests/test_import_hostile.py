"""Hostile and broken input, case by case: every failure is one line naming the file (and row and
field where there is one), or with skip_invalid a rejected row; never another exception. One
field limit (MAX_FIELD_CHARS) and one row bound (MAX_ROW_BYTES) hold for every format."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from distill.errors import UserError
from distill.importers import InvalidRowError, load_mcqs
from distill.importers.limits import MAX_FIELD_CHARS, MAX_JSON_DEPTH, MAX_ROW_BYTES

GOOD: dict[str, Any] = {"question": "Capital of France?", "choices": ["Paris", "Rome"], "answer": 0}
DEEP = "[" * 100_000 + "]" * 100_000
TOO_DEEP = f"JSON nested more than {MAX_JSON_DEPTH} levels deep"
TOO_LONG = "longer than 16 MiB, the most one row may take; not read"
NUL = "contains a NUL character (U+0000), which text may not hold"


def _over(n: int) -> str:
    return f"{n} characters, over the limit of {MAX_FIELD_CHARS} for a text field"


def _jsonl(tmp_path: Path, *lines: str, name: str = "q.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _row(**changes: Any) -> str:
    return json.dumps({**GOOD, **changes})


def _refused(path: Path, message: str, **kwargs: Any) -> None:
    """The load stops with exactly `message` after the path, on one line."""
    with pytest.raises(UserError) as info:
        load_mcqs(str(path), **kwargs)
    assert str(info.value) == f"{path}: {message}"


def _rejected(path: Path) -> list[tuple[int, str | None, str]]:
    result = load_mcqs(str(path), skip_invalid=True)
    assert [r.question for r in result.records] == [GOOD["question"]]
    return [(r.row, r.field, r.error) for r in result.rejected]


# ---- rows that are refused, and skipped under skip_invalid --------------------------------------


BAD_ROWS = [
    (DEEP, None, TOO_DEEP),
    ('{"question": ' + DEEP + ', "choices": ["a", "b"], "answer": 0}', None, TOO_DEEP),
    (_row(question="Capital\x00 of Spain?"), "question", NUL),
    (_row(choices=["Madrid", "Ro\x00me"]), "choices", f"option B: {NUL}"),
    (_row(question="Q" * 10_000_000), "question", _over(10_000_000)),
    (_row(question="Q" * (MAX_FIELD_CHARS + 1)), "question", _over(MAX_FIELD_CHARS + 1)),
    (_row(choices=["x" * 10_485_760, "y"]), "choices", f"option A: {_over(10_485_760)}"),
    (_row(answer="z" * 200_000), "answer", _over(200_000)),
    (
        '{"question": "Q\\ud800?", "choices": ["a", "b"], "answer": 0}',
        "question",
        "contains an unpaired surrogate (U+D800), which is not a character",
    ),
    (
        '{"question": "Q?", "choices": ["a", "b"], "answer": ' + "1" * 5000 + "}",
        None,
        "invalid JSON: a number with more than 4300 digits",
    ),
    (_row(answer="1" * 5000), "answer", "index 11111111111111111... is out of range for 2 options"),
    (_row(question=["a list"]), "question", "expected text, got list ['a list']"),
    (_row(question={"a": "dict"}), "question", "expected text, got dict {'a': 'dict'}"),
    (_row(question=3.5), "question", "expected text, got float 3.5"),
    (_row(choices=5), "choices", "expected a list of options, got int"),
    (_row(choices=["a", ["b"]]), "choices", "option B is list, not text"),
    (_row(choices=["a", True]), "choices", "option B is bool, not text"),
    (_row(answer=[0]), "answer", "expected a letter, an index or option text, got list"),
    (_row(subject={"x": 1}), "subject", "expected text, got dict {'x': 1}"),
    (_row(subject=["physics"]), "subject", "expected text, got list ['physics']"),
]


@pytest.mark.parametrize(("line", "field", "error"), BAD_ROWS)
def test_a_hostile_row_is_one_line_naming_file_row_and_field(
    tmp_path: Path, line: str, field: str | None, error: str
) -> None:
    path = _jsonl(tmp_path, json.dumps(GOOD), line)
    where = f"field {field!r}: " if field else ""
    with pytest.raises(InvalidRowError) as info:
        load_mcqs(str(path))
    assert str(info.value) == f"{path}: row 2: {where}{error}"
    assert _rejected(path) == [(2, field, error)]


def test_json_nesting_is_refused_just_past_the_limit(tmp_path: Path) -> None:
    def nested(depth: int) -> str:  # the row object is one level, "extra" the others
        return _row(extra=json.loads("[" * (depth - 1) + "]" * (depth - 1)))

    path = _jsonl(tmp_path, nested(MAX_JSON_DEPTH), nested(MAX_JSON_DEPTH + 1))
    result = load_mcqs(str(path), skip_invalid=True)
    assert [(r.row, r.error) for r in result.rejected] == [(2, TOO_DEEP)]
    assert len(result.records) == 1
    # Brackets inside strings are text, not nesting.
    assert load_mcqs(str(_jsonl(tmp_path, _row(question="[" * 5000 + "?")))).records


def test_a_field_at_the_limit_imports(tmp_path: Path) -> None:
    text = "é" * MAX_FIELD_CHARS
    path = _jsonl(tmp_path, _row(question=text, choices=[text[:-1] + "a", "b"]))
    [record] = load_mcqs(str(path)).records
    assert record.question == text


def test_a_rejected_row_over_the_field_limit_is_cut_in_the_report(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, json.dumps(GOOD), _row(question="Q" * 1_000_000), DEEP)
    result = load_mcqs(str(path), skip_invalid=True)
    first, second = result.rejected
    question = first.record["question"]
    assert question.startswith("Q" * 1000 + "... (1000000 characters")
    assert len(question) < 1100
    assert second.record.startswith("[" * 1000 + "... (200000 characters")
    assert all("\n" not in r.to_json() for r in result.rejected)


def test_nul_in_a_subject_is_a_separator(tmp_path: Path) -> None:
    # A subject is a label the importer normalises anyway; question and options are not rewritten.
    path = _jsonl(tmp_path, _row(subject="high_school\x00physics"))
    assert load_mcqs(str(path)).records[0].subject == "high_school physics"
    with pytest.raises(UserError, match=r"^subject contains an unpaired surrogate \(U\+DC80\)"):
        load_mcqs(str(path), subject="phys\udc80ics")


def test_invalid_utf8_in_json_lines_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    content = (json.dumps(GOOD) + "\n").encode() + b'{"question": "Caf\xe9?"}\n'
    path.write_bytes(content)
    error = f"not UTF-8 text (byte {content.index(0xE9)})"
    _refused(path, f"row 2: {error}")
    result = load_mcqs(str(path), skip_invalid=True)
    [rejection] = result.rejected
    assert (rejection.row, rejection.error) == (2, error)
    assert rejection.record == '{"question": "Caf\ufffd?"}'


def test_a_utf8_bom_is_not_a_character_of_the_first_row(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(GOOD) + "\n").encode() + b"\xff\n")
    offset = path.read_bytes().index(0xFF)  # counted in the file, BOM included
    _refused(path, f"row 2: not UTF-8 text (byte {offset})")


# ---- truncated and damaged files -----------------------------------------------------------------


def test_truncated_json_lines(tmp_path: Path) -> None:
    last = '{"question": "Déjà vu?", "choices": ["a", "b"], "answer": 0}'
    full = (json.dumps(GOOD) + "\n" + last).encode()
    path = tmp_path / "q.jsonl"
    path.write_bytes(full[: full.index(b"vu")])  # cut inside the last row's question
    _refused(path, "row 2: invalid JSON: Unterminated string starting at column 14")
    cut = full.index("é".encode()) + 1  # inside a character
    path.write_bytes(full[:cut])
    assert _rejected(path) == [(2, None, f"not UTF-8 text (byte {cut - 1})")]


def test_truncated_json_document(tmp_path: Path) -> None:
    text = json.dumps([GOOD] * 3)
    path = tmp_path / "q.json"
    path.write_text(text[:-1], encoding="utf-8")
    ends = "the file ends inside the list (is it truncated?)"
    _refused(path, f"invalid JSON at line 1 column {len(text)}: {ends}")
    path.write_text(text[:100], encoding="utf-8")  # inside the string that starts at 94
    assert text[:100].rindex('"') + 1 == 94
    _refused(path, "invalid JSON at line 1 column 94: Unterminated string")
    path.write_text(text[:1], encoding="utf-8")
    _refused(path, "invalid JSON at line 1 column 2: Expecting value")


def test_truncated_and_corrupt_gzip(tmp_path: Path) -> None:
    packed = gzip.compress(((json.dumps(GOOD) + "\n") * 2000).encode())
    path = tmp_path / "q.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(UserError) as info:
        load_mcqs(str(path), skip_invalid=True)
    message = str(info.value)
    assert message.startswith(f"{path}: row ")
    assert message.endswith(
        ": cannot read: Compressed file ended before the end-of-stream marker was reached"
    )
    damaged = bytearray(packed)
    damaged[20:40] = bytes(b ^ 0xA5 for b in damaged[20:40])
    path.write_bytes(bytes(damaged))
    with pytest.raises(UserError, match=rf"^{path}: cannot read: Error -3 while decompressing"):
        load_mcqs(str(path))


def test_truncated_and_damaged_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "q.parquet"
    pq.write_table(pa.Table.from_pylist([GOOD] * 3000), path, row_group_size=1000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _refused(
        path,
        "not a readable Parquet file: Parquet magic bytes not found in footer. Either the file "
        "is corrupted or this is not a parquet file.",
    )
    damaged = bytearray(data)
    damaged[200:260] = bytes(60)
    path.write_bytes(bytes(damaged))
    with pytest.raises(UserError, match=rf"^{path}: row 1: unreadable: "):
        load_mcqs(str(path))


def test_parquet_text_that_is_not_utf8_is_a_bad_row(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = pa.array([b"Capital of France?", b"Caf\xe9?"], type=pa.binary())
    question = pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())  # unchecked bytes
    choices = [["Paris", "Rome"], ["Paris", "Rome"]]
    path = tmp_path / "q.parquet"
    pq.write_table(pa.table({"question": question, "choices": choices, "answer": [0, 0]}), path)
    _refused(path, "row 2: field 'question': not UTF-8 text")
    assert _rejected(path) == [(2, "question", "not UTF-8 text")]


# ---- one field limit, every format --------------------------------------------------------------


def _long_rows() -> list[dict[str, Any]]:
    return [GOOD, dict(GOOD, question="Q" * (MAX_FIELD_CHARS + 1))]


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".json":
        path.write_text(json.dumps({"data": rows}), encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["question", "choices", "answer"])
            writer.writerows([r["question"], json.dumps(r["choices"]), r["answer"]] for r in rows)
    elif path.suffix == ".gz":
        path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    else:
        datasets.Dataset.from_list(rows).save_to_disk(str(path))


@pytest.mark.parametrize("name", ["q.json", "q.csv", "q.jsonl.gz", "q.parquet", "saved"])
def test_one_field_limit_in_every_format(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    _write(path, _long_rows())
    _refused(path, f"row 2: field 'question': {_over(MAX_FIELD_CHARS + 1)}")
    assert _rejected(path) == [(2, "question", _over(MAX_FIELD_CHARS + 1))]


@pytest.mark.parametrize("name", ["q.json", "q.csv", "q.parquet", "saved"])
def test_nul_is_refused_in_every_format(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    _write(path, [GOOD, dict(GOOD, choices=["Paris\x00", "Rome"])])
    _refused(path, f"row 2: field 'choices': option A: {NUL}")


def test_csv_cells_of_unused_columns_are_not_held_to_csvs_own_limit(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    cell = "n" * (MAX_FIELD_CHARS * 4)
    path.write_text(f'question,choices,answer,notes\nQ?,"[""a"", ""b""]",0,{cell}\n')
    assert load_mcqs(str(path)).records[0].question == "Q?"
    limit = csv.field_size_limit()
    assert limit == 131072  # csv's process-wide default is left as it was


def test_a_deep_json_list_in_a_csv_cell(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text(f"question,choices,answer\nQ?,{DEEP},0\n", encoding="utf-8")
    _refused(path, f"row 1: field 'choices': {TOO_DEEP}")


def test_csv_not_utf8_is_a_bad_row_and_old_mac_line_ends_still_read(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    content = b'question,choices,answer\rQ1?,"[""a"",""b""]",0\rQ\xff2?,"[""a"",""b""]",0\r'
    path.write_bytes(content)
    error = f"not UTF-8 text (byte {content.index(0xFF)})"
    _refused(path, f"row 2: {error}")
    result = load_mcqs(str(path), skip_invalid=True)
    assert [r.question for r in result.records] == ["Q1?"]
    assert result.rejected[0].record["question"] == "Q\ufffd2?"


# ---- the row bound: never read whole -------------------------------------------------------------


def test_a_line_over_the_row_bound_stops_the_import(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, json.dumps(GOOD), _row(question="Q" * MAX_ROW_BYTES))
    for skip_invalid in (False, True):
        _refused(path, f"row 2: {TOO_LONG}", skip_invalid=skip_invalid)
    # Under --limit the rows past it are not read at all.
    assert len(load_mcqs(str(path), limit=1).records) == 1


def test_a_csv_record_whose_quote_never_closes(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    line = "x" * 1023 + "\n"
    path.write_text('question,choices,answer\n"Q?,' + line * (MAX_ROW_BYTES // 1024 + 1))
    _refused(path, f"row 1: {TOO_LONG}")


def test_a_json_element_over_the_row_bound(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    big = dict(GOOD, question="Q" * MAX_ROW_BYTES)
    path.write_text(json.dumps([GOOD, big, GOOD]), encoding="utf-8")
    _refused(path, f"row 2: {TOO_LONG}")


def test_a_deep_json_document(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text(DEEP, encoding="utf-8")
    _refused(path, f"row 1: {TOO_DEEP}")
    path.write_text('{"meta": {"x": ' + DEEP + '}, "data": [' + json.dumps(GOOD) + "]}")
    _refused(path, f"the value of 'meta': {TOO_DEEP}")


def test_invalid_utf8_in_a_json_document(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    content = json.dumps([GOOD, GOOD]).encode().replace(b"Rome", b"R\xf6me", 1)
    path.write_bytes(content)
    _refused(path, f"not UTF-8 text (byte {content.index(0xF6)})")


# ---- empty files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("q.jsonl", b"", "no rows to import"),
        ("q.jsonl", b"\n  \n\t\n", "no rows to import"),
        ("q.json", b"", "no rows to import"),
        ("q.json", b"  \n", "no rows to import"),
        ("q.json", b"[]", "no rows to import"),
        (
            "q.json",
            b"{}",
            "expected a list of objects, or an object holding one such list (found keys: none)",
        ),
        ("q.csv", b"", "no rows to import"),
        ("q.tsv", b"question\tchoices\tanswer\n", "no rows to import"),
        ("q.jsonl.gz", b"", "no rows to import"),
        ("q.json.gz", gzip.compress(b""), "no rows to import"),
    ],
)
def test_empty_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    _refused(path, message)


def test_a_parquet_file_without_rows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "q.parquet"
    schema = pa.schema([("question", pa.string()), ("choices", pa.list_(pa.string()))])
    pq.write_table(schema.empty_table(), path)
    _refused(path, "no rows to import")
    path.write_bytes(b"")
    with pytest.raises(UserError, match=rf"^{path}: not a readable Parquet file: "):
        load_mcqs(str(path))
