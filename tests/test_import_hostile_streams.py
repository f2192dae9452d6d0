"""Compressed files that expand beyond memory: decompression is streamed and one row is bounded,
so a gzip bomb costs time in proportion to what it expands to, and memory only in proportion to
MAX_ROW_BYTES. Peaks are measured with tracemalloc (which sees zlib's buffers too)."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from distill.errors import UserError
from distill.importers import load_mcqs
from distill.importers.limits import MAX_ROW_BYTES

GOOD: dict[str, Any] = {"question": "Capital of France?", "choices": ["Paris", "Rome"], "answer": 0}
MiB = 1 << 20
# What reading one file may hold at once, whatever it expands to: a row's bytes, its text, and
# csv's buffer for a field, which holds four bytes a character.
PEAK = 6 * MAX_ROW_BYTES
TOO_LONG = "longer than 16 MiB, the most one row may take; not read"


def _bomb(path: Path, head: bytes, chunk: bytes, times: int, tail: bytes) -> Path:
    """A gzip file of `head`, `chunk` repeated, `tail`: one member per chunk (gzip readers
    concatenate members), so a file expanding to a GiB takes a moment to write."""
    member = gzip.compress(chunk, compresslevel=1)
    with path.open("wb") as out:
        out.write(gzip.compress(head))
        for _ in range(times):
            out.write(member)
        out.write(gzip.compress(tail))
    return path


@pytest.fixture
def peak() -> Iterator[Callable[[], int]]:
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gib_in_one_line_is_refused_at_the_row_bound(
    tmp_path: Path, peak: Callable[[], int]
) -> None:
    first = (json.dumps(GOOD) + "\n").encode()
    path = _bomb(tmp_path / "q.jsonl.gz", first, b"a" * MiB, 1024, b"\n")
    assert path.stat().st_size < 8 * MiB
    for skip_invalid in (False, True):
        with pytest.raises(UserError) as info:
            load_mcqs(str(path), skip_invalid=skip_invalid)
        assert str(info.value) == f"{path}: row 2: {TOO_LONG}"
    assert peak() < PEAK


def test_blank_lines_that_expand_to_256_mib_stream_through(
    tmp_path: Path, peak: Callable[[], int]
) -> None:
    first = (json.dumps(GOOD) + "\n").encode()
    path = _bomb(tmp_path / "q.jsonl.gz", first, b" " * (MiB - 1) + b"\n", 256, b"")
    result = load_mcqs(str(path))
    assert [r.question for r in result.records] == [GOOD["question"]]
    assert peak() < 16 * MiB


def test_a_json_document_is_parsed_a_row_at_a_time(tmp_path: Path, peak: Callable[[], int]) -> None:
    tail = json.dumps(GOOD).encode() + b"]"
    path = _bomb(tmp_path / "q.json.gz", b"[", b" \n" * (MiB // 2), 256, tail)
    assert [r.question for r in load_mcqs(str(path)).records] == [GOOD["question"]]
    assert peak() < 16 * MiB


def test_a_json_row_that_expands_past_the_bound(tmp_path: Path, peak: Callable[[], int]) -> None:
    path = _bomb(tmp_path / "q.json.gz", b'[{"question": "', b"a" * MiB, 1024, b'"}]')
    with pytest.raises(UserError) as info:
        load_mcqs(str(path))
    assert str(info.value) == f"{path}: row 1: {TOO_LONG}"
    assert peak() < PEAK


def test_a_csv_field_that_expands_past_the_bound(tmp_path: Path, peak: Callable[[], int]) -> None:
    lines = (b"a" * 1023 + b"\n") * 1024  # a quoted field that runs on over a GiB of lines
    path = _bomb(tmp_path / "q.csv.gz", b'question,choices,answer\n"', lines, 1024, b'"\n')
    with pytest.raises(UserError) as info:
        load_mcqs(str(path))
    assert str(info.value) == f"{path}: row 1: {TOO_LONG}"
    assert peak() < PEAK
