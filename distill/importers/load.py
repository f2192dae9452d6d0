"""Read and validate a whole source: `load_mcqs` is the reusable reader (import uses it, and so
does export's decontamination check). Touches no database."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.importers.layout import FieldMapping, Layout, resolve_layout
from distill.importers.limits import compact, text_problem
from distill.importers.readers import RawRow, RawTable, open_source
from distill.importers.rows import SUBJECT_MAX, RowError, to_record
from schemas.mcq import MCQRecord, normalise_label

logger = logging.getLogger(__name__)

# (phase, done, total): "read" counts rows, "insert" counts questions. Total None when unknown.
ProgressCallback = Callable[[str, int, int | None], None]
PROGRESS_EVERY = 1000


class InvalidRowError(UserError):
    """A bad row in an all-or-nothing load: one line naming the source, row and field."""

    def __init__(self, source: str, row: int, field: str | None, message: str) -> None:
        where = f"{source}: row {row}: " + (f"field {field!r}: " if field else "")
        super().__init__(" ".join((where + message).split()))
        self.source, self.row, self.field, self.message = source, row, field, message


@dataclass(frozen=True, slots=True)
class Rejection:
    """A row left out under skip_invalid, with the reason and the row as it was read."""

    row: int
    field: str | None
    error: str
    record: Any

    def to_json(self) -> str:
        payload = {"row": self.row, "field": self.field, "error": self.error, "record": self.record}
        # default=str: Parquet and datasets rows may hold dates, decimals or bytes.
        line = json.dumps(payload, ensure_ascii=False, default=str)
        if line.isascii() or _encodable(line):
            return line
        # Lone surrogates (from JSON escapes like "\ud800") cannot be written as UTF-8; escaped,
        # they can, and read back as they were.
        return json.dumps(payload, default=str)


@dataclass(slots=True)
class LoadResult:
    records: list[MCQRecord]
    rejected: list[Rejection] = field(default_factory=list)
    source: str = ""  # the label stored on each question (file name, or dataset + split)
    preset: str | None = None  # the preset the columns were read with, if any
    rows_read: int = 0


def load_mcqs(
    source: str,
    *,
    preset: str | None = None,
    mapping: FieldMapping | None = None,
    split: str | None = None,
    config_name: str | None = None,
    subject: str | None = None,
    skip_invalid: bool = False,
    limit: int | None = None,
    progress: ProgressCallback | None = None,
) -> LoadResult:
    """Every valid question in `source`, in source order (duplicates kept).

    Without `skip_invalid` the first bad row raises InvalidRowError (a UserError); with it, bad
    rows are returned in `rejected`. File-level problems (missing file, unknown format, columns
    that match no layout) always raise UserError."""
    subject = _constant_subject(subject)
    table = open_source(source, split=split, config_name=config_name, limit=limit)
    if table.total == 0:
        raise UserError(f"{table.name}: no rows to import")
    layout = _layout(table, preset=preset, mapping=mapping)
    result = LoadResult(records=[], source=table.label, preset=layout.preset)
    for raw in table.rows:
        result.rows_read += 1
        if progress is not None and result.rows_read % PROGRESS_EVERY == 0:
            progress("read", result.rows_read, table.total)
        try:
            if raw.data is None:
                raise RowError(raw.field, raw.error or "unreadable")
            result.records.append(to_record(raw.data, layout, subject=subject, source=table.label))
        except RowError as exc:
            if not skip_invalid:
                raise InvalidRowError(table.name, raw.number, exc.field, exc.message) from None
            rejection = Rejection(raw.number, exc.field, exc.message, compact(raw.original))
            result.rejected.append(rejection)
    if progress is not None:
        progress("read", result.rows_read, result.rows_read)
    if result.rows_read == 0:
        raise UserError(f"{table.name}: no rows to import")
    logger.info(
        "%s: %d rows read, %d valid, %d rejected (layout %s)",
        table.name,
        result.rows_read,
        len(result.records),
        len(result.rejected),
        layout.preset or "custom",
    )
    return result


def _layout(table: RawTable, *, preset: str | None, mapping: FieldMapping | None) -> Layout:
    """The layout to read `table` with. When no row could be read, there are no columns to fit
    one to, and what is wrong is the rows: the first one's error says it."""
    try:
        return resolve_layout(
            name=table.name, columns=table.columns, preset=preset, mapping=mapping
        )
    except UserError:
        if not table.columns and isinstance(table.rows, list) and table.rows:
            first: RawRow = table.rows[0]
            if first.error is not None:
                bad = InvalidRowError(table.name, first.number, first.field, first.error)
                raise UserError(str(bad)) from None
        raise


def write_rejections(path: Path, rejected: list[Rejection]) -> None:
    """The rejection report: one JSON object per rejected row."""
    try:
        with path.open("w", encoding="utf-8") as out:
            for rejection in rejected:
                out.write(rejection.to_json() + "\n")
    except OSError as exc:
        raise UserError(f"{path}: cannot write the rejection report: {exc.strerror}") from None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _constant_subject(subject: str | None) -> str | None:
    if subject is None:
        return None
    text = normalise_label(subject)
    if not text:
        raise UserError("subject must not be empty")
    if len(text) > SUBJECT_MAX:
        raise UserError(f"subject is longer than {SUBJECT_MAX} characters")
    problem = text_problem(text)
    if problem is not None:
        raise UserError(f"subject {problem}")
    return text
