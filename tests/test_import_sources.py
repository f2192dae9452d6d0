"""Every source format reads into the same questions: JSONL, JSON, CSV/TSV, gzip, Parquet,
`datasets` directories (Dataset and DatasetDict), local dataset folders and Hub ids (the Hub
itself faked: no network in tests)."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distill.errors import UserError
from distill.importers import FieldMapping, load_mcqs

ROWS: list[dict[str, Any]] = [
    {"question": "2 + 2 = ?", "choices": ["3", "4", "5", "6"], "answer": 1, "subject": "math"},
    {"question": "Capital of France?", "choices": ["Rome", "Paris"], "answer": 1, "subject": "geo"},
    {"question": "H2O is", "choices": ["water", "salt", "sand"], "answer": 0, "subject": "chem"},
]


def _expected() -> list[tuple[str, list[str], int, str]]:
    return [(r["question"], r["choices"], r["answer"], r["subject"]) for r in ROWS]


def _seen(source: str, **kwargs: Any) -> list[tuple[str, list[str], int, str]]:
    return [
        (r.question, r.choices, r.answer_index, r.subject)
        for r in load_mcqs(source, **kwargs).records
    ]


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_jsonl_skips_blank_lines_and_numbers_rows_by_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(_jsonl(ROWS[:1]) + "\n\n" + _jsonl(ROWS[1:]), encoding="utf-8")
    assert _seen(str(path)) == _expected()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        _jsonl(ROWS[:1]) + "\n" + '{"question": "x", "choices": ["a","b"], "answer": 9}\n'
    )
    with pytest.raises(UserError, match=r"bad.jsonl: row 3: field 'answer'"):
        load_mcqs(str(bad))


def test_jsonl_lines_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    row = dict(ROWS[0], question="First part\u2028second part\u0085?")
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\r\n", encoding="utf-8")
    assert load_mcqs(str(path)).records[0].question == "First part\u2028second part\u0085?"


@pytest.mark.parametrize(
    "payload",
    [ROWS, {"data": ROWS}, {"version": 1, "questions": ROWS}],
    ids=["list", "data-key", "one-list-member"],
)
def test_json_list_or_object_holding_one(tmp_path: Path, payload: object) -> None:
    path = tmp_path / "q.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    assert _seen(str(path)) == _expected()


def test_json_file_holding_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text(_jsonl(ROWS), encoding="utf-8")
    assert _seen(str(path)) == _expected()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"a": [1], "b": [2]}', r"an object holding one such list \(found keys: a, b\)"),
        ('"just text"', "expected a list of objects, got a string"),
        ('[{"question": "x",]', "invalid JSON at line 1 column 19"),
    ],
)
def test_json_shapes_that_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "q.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        load_mcqs(str(path))


def test_csv_with_one_column_per_option(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["question", "A", "B", "C", "D", "key", "subject"])
        for row in ROWS:
            options = row["choices"] + [""] * (4 - len(row["choices"]))
            writer.writerow([row["question"], *options, "ABCD"[row["answer"]], row["subject"]])
    mapping = FieldMapping(choices=("A", "B", "C", "D"), answer="key")
    assert _seen(str(path), mapping=mapping) == _expected()  # trailing empty cells: fewer options


def test_csv_with_a_json_list_column_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as out:
        writer = csv.writer(out)
        writer.writerow(["question", "choices", "answer", "subject"])
        # Answers as digit strings (CSV has no integers); a quoted question over two lines.
        for row in [*ROWS, dict(ROWS[0], question="First line,\nsecond line?")]:
            choices = json.dumps(row["choices"])
            writer.writerow([row["question"], choices, str(row["answer"]), row["subject"]])
    seen = _seen(str(path))
    assert seen[:3] == _expected()
    assert seen[3][0] == "First line,\nsecond line?"


def test_tsv_and_gzip(tmp_path: Path) -> None:
    lines = ["question\tchoices\tanswer\tsubject"]
    lines += [
        f"{r['question']}\t{json.dumps(r['choices'])}\t{r['answer']}\t{r['subject']}" for r in ROWS
    ]
    tsv = tmp_path / "q.tsv"
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert _seen(str(tsv)) == _expected()
    gz = tmp_path / "q.jsonl.gz"
    gz.write_bytes(gzip.compress(_jsonl(ROWS).encode()))
    assert _seen(str(gz)) == _expected()
    assert load_mcqs(str(gz)).source == "q.jsonl.gz"


def test_parquet_with_list_and_struct_columns(tmp_path: Path) -> None:
    path = tmp_path / "q.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert _seen(str(path)) == _expected()
    arc = [
        {
            "question": "Which is a liquid?",
            "choices": {"text": ["ice", "water", "steam"], "label": ["1", "2", "3"]},
            "answerKey": "2",
        }
    ]
    arc_path = tmp_path / "arc.parquet"
    pq.write_table(pa.Table.from_pylist(arc), arc_path)
    result = load_mcqs(str(arc_path))
    assert result.preset == "arc"
    assert result.records[0].answer_index == 1


def test_saved_dataset_and_dataset_dict(tmp_path: Path) -> None:
    single = tmp_path / "single"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(single))
    assert _seen(str(single)) == _expected()
    assert load_mcqs(str(single)).source == "single"

    splits = tmp_path / "mmlu_saved"
    other = [dict(ROWS[0], question="A train question?")]
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(other), "test": datasets.Dataset.from_list(ROWS)}
    ).save_to_disk(str(splits))
    default = load_mcqs(str(splits))
    assert default.source == "mmlu_saved:test"  # 'test' when present
    assert len(default.records) == 3
    train = load_mcqs(str(splits), split="train")
    assert (train.source, train.records[0].question) == ("mmlu_saved:train", "A train question?")
    with pytest.raises(UserError, match=r"no split 'dev' \(splits: train, test\)"):
        load_mcqs(str(splits), split="dev")


def test_dataset_dict_without_test_uses_the_first_split(tmp_path: Path) -> None:
    path = tmp_path / "saved"
    datasets.DatasetDict(
        {
            "validation": datasets.Dataset.from_list(ROWS[:1]),
            "train": datasets.Dataset.from_list(ROWS),
        }
    ).save_to_disk(str(path))
    assert load_mcqs(str(path)).source == "saved:validation"


def test_folder_of_data_files_goes_through_load_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    folder = tmp_path / "repo_clone"
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ROWS), folder / "data" / "test-00000-of-00001.parquet")
    result = load_mcqs(str(folder))
    assert result.source == "repo_clone:test"
    assert [r.question for r in result.records] == [r["question"] for r in ROWS]


def test_hub_dataset_is_loaded_by_name_config_and_split(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake_load_dataset(name: str, config: str | None = None, *, split: str | None = None) -> Any:
        calls.append((name, config, split))
        ds = datasets.Dataset.from_list(ROWS)
        return ds if split else datasets.DatasetDict({"dev": ds.select([0]), "test": ds})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    result = load_mcqs("cais/mmlu", config_name="all", split="test")
    assert calls == [("cais/mmlu", "all", "test")]
    assert result.source == "cais/mmlu:all:test"
    assert (result.records[0].question, result.records[0].subject) == ("2 + 2 = ?", "math")
    assert load_mcqs("cais/mmlu").source == "cais/mmlu:test"  # no split: 'test' of the dict


def test_hub_failure_is_one_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("Couldn't reach 'nobody/nothing' on the Hub\n(offline)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError) as info:
        load_mcqs("nobody/nothing")
    assert str(info.value) == (
        "nobody/nothing: not a local file, and loading it from the Hugging Face Hub failed: "
        "Couldn't reach 'nobody/nothing' on the Hub (offline)"
    )


def test_limit_reads_only_the_first_rows(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(_jsonl(ROWS) + "not json\n", encoding="utf-8")  # past the limit: never read
    result = load_mcqs(str(path), limit=2)
    assert (result.rows_read, len(result.records)) == (2, 2)
    parquet = tmp_path / "q.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), parquet)
    assert len(load_mcqs(str(parquet), limit=1).records) == 1


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("q.txt", b"hello", "q.txt: unsupported file type '.txt' (expected .jsonl"),
        ("q", b"hello", "q: unsupported file type 'no extension'"),
        ("q.jsonl", b"\xff\xfe\x00bad", "q.jsonl: not UTF-8 text (byte 0)"),
        ("q.jsonl.gz", b"not gzip", "q.jsonl.gz: cannot read: Not a gzipped file"),
        ("q.parquet", b"not parquet", "q.parquet: not a readable Parquet file"),
        ("q.jsonl", b"", "q.jsonl: no rows to import"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as info:
        load_mcqs(str(path))
    assert str(info.value).startswith(str(tmp_path / message.split(": ")[0]) + ": ")
    assert message.split(": ", 1)[1] in str(info.value)


def test_malformed_csv_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('question,choices,answer\nQ?,"[""a"", ""b""]",0\n"unterminated,x,1\n')
    with pytest.raises(UserError, match=r"q.csv: row 2: malformed CSV: unexpected end of data"):
        load_mcqs(str(path))


@pytest.mark.parametrize("source", ["data/missing.jsonl", "./nothing", "/no/such/dir/q.csv"])
def test_missing_files_are_not_sent_to_the_hub(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a path must not be looked up on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", never)
    with pytest.raises(UserError, match=f"^{source}: no such file or directory$"):
        load_mcqs(source)


def test_split_on_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(_jsonl(ROWS), encoding="utf-8")
    with pytest.raises(UserError, match="--split and --config apply only to datasets"):
        load_mcqs(str(path), split="test")
