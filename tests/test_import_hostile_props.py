"""Properties over hostile input: whatever the bytes, a load either succeeds or stops with one
UserError line naming the file; under skip_invalid every row read is a record or a rejection,
and the rejection report can always be written."""

from __future__ import annotations

import csv
import gzip
import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distill.errors import UserError
from distill.importers import jsondoc, load_mcqs
from distill.importers.load import write_rejections
from distill.importers.textfiles import ROW_TOO_LONG

FORMATS = ["q.jsonl", "q.json", "q.csv", "q.tsv", "q.jsonl.gz", "q.json.gz", "q.parquet"]
# Bytes that reach the parsers' inner states more often than random bytes do.
JSONISH = st.text(
    alphabet='[]{}",:0123456789.eE-+ \n\r\t\\/ubtrnfalsINy\x00\u00e9\u2028', max_size=80
)
ROWS = [
    {"question": "Capital of France?", "choices": ["Paris", "Rome"], "answer": 0},
    {"question": "Café?", "choices": ["oui", "non"], "answer": "A", "subject": "fr"},
]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any JSON value, text holding any code point: NUL, lone surrogates, line separators.
any_text = st.text(st.characters(codec=None, categories=None), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
rows = st.fixed_dictionaries(
    {
        "question": json_values | any_text,
        "choices": json_values | st.lists(any_text, max_size=5),
        "answer": json_values,
    },
    optional={"subject": json_values},
)


@contextmanager
def _file(name: str, content: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        yield path


def _load_or_refuse(path: Path, **kwargs: Any) -> None:
    """The property: success, or one UserError line that names the file."""
    try:
        load_mcqs(str(path), **kwargs)
    except UserError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") or message.startswith(f"{path.name}: ")
        assert "\n" not in message


def _valid(name: str) -> bytes:
    if name.endswith(".gz"):
        return gzip.compress(_valid(name.removesuffix(".gz")))
    if name.endswith(".jsonl"):
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS).encode()
    if name.endswith(".json"):
        return json.dumps({"data": ROWS}, ensure_ascii=False, indent=1).encode()
    if name.endswith(".parquet"):
        out = io.BytesIO()
        pq.write_table(pa.Table.from_pylist([dict(r, answer=str(r["answer"])) for r in ROWS]), out)
        return out.getvalue()
    text = io.StringIO(newline="")
    writer = csv.writer(text, delimiter="\t" if name.endswith(".tsv") else ",")
    writer.writerow(["question", "choices", "answer"])
    writer.writerows([r["question"], json.dumps(r["choices"]), r["answer"]] for r in ROWS)
    return text.getvalue().encode()


@SETTINGS
@given(name=st.sampled_from(FORMATS), content=st.binary(max_size=300), skip=st.booleans())
def test_any_bytes_load_or_are_refused_in_one_line(name: str, content: bytes, skip: bool) -> None:
    with _file(name, content) as path:
        _load_or_refuse(path, skip_invalid=skip)


@SETTINGS
@given(name=st.sampled_from(FORMATS[:5]), text=JSONISH, skip=st.booleans())
def test_json_like_text_loads_or_is_refused_in_one_line(name: str, text: str, skip: bool) -> None:
    content = text.encode("utf-8", "surrogatepass")
    with _file(name, gzip.compress(content) if name.endswith(".gz") else content) as path:
        _load_or_refuse(path, skip_invalid=skip)


@SETTINGS
@given(name=st.sampled_from(FORMATS), data=st.data())
def test_a_file_cut_anywhere_loads_or_is_refused_in_one_line(
    name: str, data: st.DataObject
) -> None:
    content = _valid(name)
    cut = data.draw(st.integers(0, len(content) - 1), label="cut")
    with _file(name, content[:cut]) as path:
        _load_or_refuse(path, skip_invalid=data.draw(st.booleans(), label="skip"))


@SETTINGS
@given(name=st.sampled_from(FORMATS), data=st.data())
def test_a_file_with_bytes_changed_loads_or_is_refused(name: str, data: st.DataObject) -> None:
    content = bytearray(_valid(name))
    for _ in range(data.draw(st.integers(1, 8), label="changes")):
        content[data.draw(st.integers(0, len(content) - 1))] = data.draw(st.integers(0, 255))
    with _file(name, bytes(content)) as path:
        _load_or_refuse(path, skip_invalid=data.draw(st.booleans(), label="skip"))


@SETTINGS
@given(st.lists(rows, min_size=1, max_size=5), st.sampled_from(["q.jsonl", "q.json"]))
def test_any_json_rows_are_records_or_rejections(batch: list[dict[str, Any]], name: str) -> None:
    lines = [json.dumps(row) for row in batch]
    content = "\n".join(lines) if name == "q.jsonl" else "[" + ",".join(lines) + "]"
    with _file(name, content.encode()) as path:
        result = load_mcqs(str(path), skip_invalid=True)
        assert len(result.records) + len(result.rejected) == result.rows_read == len(batch)
        report = path.with_suffix(".rejected.jsonl")
        write_rejections(report, result.rejected)
        # JSON lines end at "\n" only: text may hold U+0085 and U+2028 as they are.
        written = report.read_text(encoding="utf-8").split("\n")[:-1]
        assert [json.loads(line)["row"] for line in written] == [r.row for r in result.rejected]


# ---- the .json reader at every buffer boundary ---------------------------------------------------

json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)


def _streamed(text: str, chunk: int) -> tuple[str, Any]:
    """What jsondoc makes of `text` read `chunk` bytes at a time: ("rows", values), ("lines",
    None) for JSON lines, or ("error", message)."""
    with patch.object(jsondoc, "_CHUNK", chunk):
        try:
            document = jsondoc.read_json(io.BytesIO(text.encode()), name="q.json", limit=None)
        except UserError as exc:
            return "error", str(exc)
    if document.is_json_lines:
        return "lines", None
    return "rows", [row.data if row.data is not None else row.original for row in document.rows]


@SETTINGS
@given(
    doc=st.lists(json_docs, max_size=4) | st.dictionaries(st.text(max_size=4), json_docs),
    indent=st.none() | st.integers(0, 2),
    chunk=st.integers(1, 9),
    data=st.data(),
)
def test_the_json_reader_agrees_with_json_loads(
    doc: Any, indent: int | None, chunk: int, data: st.DataObject
) -> None:
    text = json.dumps(doc, indent=indent, ensure_ascii=data.draw(st.booleans()))
    if data.draw(st.booleans(), label="damage") and text:
        at = data.draw(st.integers(0, len(text) - 1), label="at")
        text = text[:at] + data.draw(st.sampled_from('[]{}",: 1\n'), label="char") + text[at + 1 :]
    kind, seen = _streamed(text, chunk)
    try:
        expected = json.loads(text)
    except json.JSONDecodeError as exc:
        error = exc
    else:
        error = None
    if error is not None:
        if error.msg == "Extra data":
            assert kind == "lines"
        elif kind == "error" and error.pos < len(text.rstrip()):  # at the end the words differ
            assert f"invalid JSON at line {error.lineno} column {error.colno}: " in seen
        else:
            assert kind == "error"
        return
    if isinstance(expected, dict):
        lists = [value for value in expected.values() if isinstance(value, list)]
        expected = lists[0] if len(lists) == 1 else None
    if isinstance(expected, list):
        assert (kind, seen) == ("rows", expected)
    else:
        assert kind == "error" and "expected a list of objects" in seen


@SETTINGS
@given(size=st.integers(0, 40), wide=st.booleans(), chunk=st.integers(1, 9))
def test_the_json_row_bound_counts_bytes(size: int, wide: bool, chunk: int) -> None:
    row = json.dumps({"q": ("é" if wide else "e") * size}, ensure_ascii=False)
    with patch.object(jsondoc, "MAX_ROW_BYTES", 32):
        kind, seen = _streamed(f"[{row}]", chunk)
    if len(row.encode()) <= 32:
        assert kind == "rows"
    else:
        assert (kind, seen) == ("error", f"q.json: row 1: {ROW_TOO_LONG}")
