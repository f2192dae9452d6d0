"""JSON lines and CSV/TSV, read as a stream of bounded lines: a file, gzipped or not, is never
held whole (a gzip bomb expands only as far as one row), and a line longer than MAX_ROW_BYTES
stops the import without being read.

In JSON lines each line stands alone, so a line that is not UTF-8 or not JSON is a bad row (the
others import under --skip-invalid). A CSV record may span lines and its quoting runs on from
one to the next, so malformed quoting stops the import; bytes that are not UTF-8 leave the
quoting intact and make only their record a bad row."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from distill.errors import UserError
from distill.importers.jsontext import JSONTextError, parse_json
from distill.importers.limits import MAX_ROW_BYTES, MAX_ROW_TEXT
from distill.importers.raw import RawRow, RawTable, one_line, row_of

# What reading a damaged file raises: OSError (also gzip.BadGzipFile), EOFError (a truncated
# gzip stream), zlib.error (corrupt deflate data).
READ_ERRORS = (OSError, EOFError, zlib.error)
_AFTER_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")
ROW_TOO_LONG = f"longer than {MAX_ROW_TEXT}, the most one row may take; not read"


def open_binary(path: Path, *, name: str, gzipped: bool) -> io.BufferedIOBase:
    """The file's bytes as a stream; a gzipped file is decompressed as it is read."""
    try:
        return gzip.open(path, "rb") if gzipped else path.open("rb")
    except OSError as exc:
        raise UserError(f"{name}: cannot read: {one_line(exc)}") from None


class Reading:
    """Where reading a text file is: the data row being read (0: the header), the bytes of it
    read so far, and whether any of them were not UTF-8. The reader of a format moves it on at
    the end of each row."""

    def __init__(self, name: str, row: int) -> None:
        self.name = name
        self.row = row
        self.held = 0
        self.not_utf8: str | None = None

    def next_row(self, row: int) -> None:
        self.row, self.held, self.not_utf8 = row, 0, None

    def fail(self, message: str) -> NoReturn:
        where = f"row {self.row}" if self.row else "the header row"
        raise UserError(f"{self.name}: {where}: {message}")


def lines(stream: io.BufferedIOBase, reading: Reading) -> Iterator[tuple[int, bytes]]:
    """Each line with its newline, and where in the (decompressed) file it starts. Split at
    b"\n" only: str.splitlines would also split at U+2028, which JSON strings may hold
    unescaped. Once the row being read holds more than MAX_ROW_BYTES, the import stops; no more
    of it is read than that."""
    readline = stream.readline
    offset = 0
    while True:
        try:
            line = readline(MAX_ROW_BYTES + 1)
        except READ_ERRORS as exc:
            if offset == 0:  # the file as a whole: not gzip, say
                raise UserError(f"{reading.name}: cannot read: {one_line(exc)}") from None
            reading.fail(f"cannot read: {one_line(exc)}")
        if not line:
            return
        reading.held += len(line)
        if reading.held > MAX_ROW_BYTES:
            reading.fail(ROW_TOO_LONG)
        if offset == 0 and line.startswith(codecs.BOM_UTF8):
            yield len(codecs.BOM_UTF8), line[len(codecs.BOM_UTF8) :]
        else:
            yield offset, line
        offset += len(line)


def _not_utf8(offset: int, exc: UnicodeDecodeError) -> str:
    return f"not UTF-8 text (byte {offset + exc.start})"


# ---- JSON lines --------------------------------------------------------------------------------


def jsonl_rows(stream: io.BufferedIOBase, *, name: str, limit: int | None) -> list[RawRow]:
    """One row per non-blank line; the row number is the line number."""
    reading = Reading(name, row=1)
    rows: list[RawRow] = []
    for number, (offset, line) in enumerate(lines(stream, reading), start=1):
        row = _jsonl_row(number, offset, line)
        if row is not None:
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
        reading.next_row(number + 1)
    return rows


def _jsonl_row(number: int, offset: int, line: bytes) -> RawRow | None:
    """The line's row, or None for a blank line. Bytes that are not UTF-8 become U+FFFD in the
    row as reported, which can then be shown, and written to the report."""
    try:
        text = line.decode("utf-8").removesuffix("\n")
    except UnicodeDecodeError as exc:
        shown = line.decode("utf-8", "replace").removesuffix("\n")
        return RawRow(number, None, shown, _not_utf8(offset, exc))
    if not text.strip():
        return None
    try:
        return row_of(number, parse_json(text))
    except JSONTextError as exc:
        return RawRow(number, None, text, exc.message)


# ---- CSV / TSV ---------------------------------------------------------------------------------


def csv_table(
    stream: io.BufferedIOBase, *, name: str, label: str, delimiter: str, limit: int | None
) -> RawTable:
    """A header row, then one row per record; the row number is the data record's. A record is
    bounded as a whole (a lost quote cannot make one record swallow the file); bytes that are
    not UTF-8 are read as U+FFFD, so the record still parses, and is reported."""
    reading = Reading(name, row=0)
    reader = csv.DictReader(_csv_text(reading, stream), delimiter=delimiter, strict=True)
    rows: list[RawRow] = []
    # Records are bounded by `lines`, fields by the field limit where they are used (rows.py),
    # so csv's own limit of 128 Ki characters in any cell, used or not, must not apply.
    with _csv_field_size_limit(MAX_ROW_BYTES):
        try:
            columns = tuple(c for c in reader.fieldnames or () if c)
            reading.next_row(1)
            for cells in reader:
                cells.pop(None, None)  # cells past the header
                rows.append(_csv_row(len(rows) + 1, cells, reading.not_utf8))
                if limit is not None and len(rows) >= limit:
                    break
                reading.next_row(len(rows) + 1)
        except csv.Error as exc:
            raise UserError(f"{name}: row {len(rows) + 1}: malformed CSV: {exc}") from None
    return RawTable(name, label, columns, rows, len(rows))


def _csv_row(number: int, cells: dict[str, str], not_utf8: str | None) -> RawRow:
    if not_utf8 is not None:
        return RawRow(number, None, cells, not_utf8)
    return RawRow(number, cells, cells)


def _csv_text(reading: Reading, stream: io.BufferedIOBase) -> Iterator[str]:
    """The lines csv reads, as text; a lone CR ends a line too (old Mac files), as in a file
    opened with newline=""."""
    for offset, line in lines(stream, reading):
        if line.find(b"\r", 0, len(line) - 2) < 0:
            parts = [(offset, line)]
        else:
            parts = _split_at_lone_cr(offset, line)
        for start, part in parts:
            try:
                text = part.decode("utf-8")
            except UnicodeDecodeError as exc:
                text = part.decode("utf-8", "replace")
                reading.not_utf8 = reading.not_utf8 or _not_utf8(start, exc)
            yield text


def _split_at_lone_cr(offset: int, line: bytes) -> list[tuple[int, bytes]]:
    parts = []
    for part in _AFTER_LONE_CR.split(line):
        if part:
            parts.append((offset, part))
            offset += len(part)
    return parts


@contextmanager
def _csv_field_size_limit(limit: int) -> Iterator[None]:
    # csv's limit is process-wide: put it back, so that no other user of csv sees a change.
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)
