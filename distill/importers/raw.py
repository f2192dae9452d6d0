"""Rows as a reader hands them on, before any column layout is applied; shared by the readers of
every format."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RawRow:
    """One data row. `data` is None when the row could not be parsed; `error` then says why, and
    `field` names the column at fault when one is known."""

    number: int  # 1-based data row (for JSON lines: the line number)
    data: dict[str, Any] | None
    original: Any  # what a rejection report shows: the parsed object, or the raw line
    error: str | None = None
    field: str | None = None


@dataclass(frozen=True, slots=True)
class RawTable:
    name: str  # how error messages name the source: what the user typed
    label: str  # stored as each question's source: file name, or dataset (+config) + split
    columns: tuple[str, ...]
    rows: Iterable[RawRow]
    total: int | None  # rows to expect, when known up front (for a progress bar)


def row_of(number: int, obj: object) -> RawRow:
    """A parsed object as a row; anything but a JSON object is a bad row."""
    if isinstance(obj, dict):
        return RawRow(number, obj, obj)
    return RawRow(number, None, obj, f"expected an object, got {json_type(obj)}")


def union_of_keys(rows: Iterable[RawRow]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for row in rows:
        if row.data is not None:
            seen.update(dict.fromkeys(row.data))
    return tuple(seen)


def json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def label_of(name: str) -> str:
    """A file or folder name as text that can be stored and printed: a name that is not UTF-8
    reaches Python with surrogate escapes, which neither the database nor stdout would take."""
    return os.fsencode(name).decode("utf-8", "replace")
