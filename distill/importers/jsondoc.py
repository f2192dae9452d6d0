"""A .json file read as a stream: a list of objects, or an object with one list member, parsed a
row at a time. json.loads would need the whole document in memory (a gzipped one decompressed
whole); here at most one row, MAX_ROW_BYTES, is held as text.

A .json file is one JSON document, so anything that keeps it from being read as JSON (invalid
JSON, bytes that are not UTF-8, a row too long or nested too deep) stops the import, naming the
row where there is one. A file that holds more than one JSON value is JSON lines, read as such."""

from __future__ import annotations

import codecs
import io
import json
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from distill.errors import UserError
from distill.importers.jsontext import TOO_DEEP, not_json_reason, too_deep
from distill.importers.limits import MAX_ROW_BYTES
from distill.importers.raw import RawRow, json_type, one_line, row_of
from distill.importers.textfiles import READ_ERRORS, ROW_TOO_LONG

_CHUNK = 1 << 20
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
# A decode error this far from the end of the text read so far cannot be the text running out.
_TAIL = 8  # the longest token json reads whole: "Infinity"
# A value that ends this close to the end of the text read so far may go on: "1" of "1.5", of
# "1e+9" (the number read is "1" while the text ends in "1.", "1e" or "1e+").
_NUMBER_TAIL = 2


@dataclass(frozen=True, slots=True)
class JsonDocument:
    """The rows of a .json file; `is_json_lines` when it holds several values instead."""

    rows: list[RawRow]
    is_json_lines: bool = False


def read_json(stream: io.BufferedIOBase, *, name: str, limit: int | None) -> JsonDocument:
    text = _Text(stream, name)
    first = text.peek()
    if first == "":
        return JsonDocument([])
    if first == "[":
        rows = _list_rows(text, limit)
        if limit is not None and len(rows) >= limit:
            return JsonDocument(rows)  # the rest is not read
    elif first == "{":
        members = _members(text)
        if text.peek() != "":
            return JsonDocument([], is_json_lines=True)
        return JsonDocument(_member_rows(text, members))
    else:
        value = text.value("the file")
        if text.peek() == "":
            raise UserError(f"{name}: expected a list of objects, got {json_type(value)}")
        return JsonDocument([], is_json_lines=True)
    if text.peek() != "":
        return JsonDocument([], is_json_lines=True)
    return JsonDocument(rows)


def _list_rows(text: _Text, limit: int | None) -> list[RawRow]:
    text.take("[")
    rows: list[RawRow] = []
    if text.peek() == "]":
        text.take("]")
        return rows
    while limit is None or len(rows) < limit:
        number = len(rows) + 1
        rows.append(row_of(number, text.value(f"row {number}")))
        after = text.peek()
        if after == "]":
            text.take("]")
            break
        text.expect(",", "Expecting ',' delimiter", "the list")
    return rows


def _members(text: _Text) -> dict[str, list[RawRow] | None]:
    """An object's members in order; list members with their elements as rows, others None."""
    text.take("{")
    members: dict[str, list[RawRow] | None] = {}
    if text.peek() == "}":
        text.take("}")
        return members
    while True:
        if text.peek() != '"':
            text.fail("Expecting property name enclosed in double quotes", "the object")
        key = str(text.value("a key"))
        text.expect(":", "Expecting ':' delimiter", "the object")
        if text.peek() == "[":
            members[key] = _list_rows(text, None)
        else:
            shown = key if len(key) <= 60 else key[:57] + "..."
            text.value(f"the value of {shown!r}")
            members[key] = None
        if text.peek() == "}":
            text.take("}")
            return members
        text.expect(",", "Expecting ',' delimiter", "the object")


def _member_rows(text: _Text, members: dict[str, list[RawRow] | None]) -> list[RawRow]:
    lists = [rows for rows in members.values() if rows is not None]
    if len(lists) != 1:
        keys = ", ".join(members) or "none"
        text.refuse(
            f"expected a list of objects, or an object holding one such list (found keys: {keys})"
        )
    return lists[0]


class _Text:
    """The document's text, decoded as it is read, with a cursor. Text before the cursor is
    dropped as more is read; line and column of what was dropped are kept for messages."""

    def __init__(self, stream: io.BufferedIOBase, name: str) -> None:
        self._stream = stream
        self._name = name
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._bytes = 0  # read so far
        self._line = self._column = 0  # where buf[0] is in the file (0-based)
        self.buf = ""
        self.pos = 0
        self.eof = False

    def peek(self) -> str:
        """The next character after whitespace, not consumed; "" at the end of the file."""
        while True:
            space = _WHITESPACE.match(self.buf, self.pos)
            assert space is not None  # the pattern matches the empty string too
            self.pos = space.end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more(_CHUNK):
                return ""

    def take(self, char: str) -> None:
        assert self.buf[self.pos] == char
        self.pos += 1

    def expect(self, char: str, message: str, inside: str) -> None:
        if self.peek() != char:
            self.fail(message, inside)
        self.pos += 1

    def value(self, what: str) -> Any:
        """The JSON value at the cursor, `what` naming it for errors. The text read grows until
        the value parses or reaches MAX_ROW_BYTES; it grows geometrically, so re-parsing a long
        row from its start costs linear time."""
        self.peek()
        while True:
            start = self.pos
            parsed = self._parse(start, what)
            if parsed is None:  # the text read so far ends inside the value
                held = len(self.buf) - start
                if held > MAX_ROW_BYTES:
                    self.refuse(ROW_TOO_LONG, what)
                self._more(min(held, MAX_ROW_BYTES + 1 - held))  # never far past the bound
            elif parsed[1] + _NUMBER_TAIL < len(self.buf) or self.eof:
                break
            else:  # parsed, but a number may go on: read on to see
                self._more(_CHUNK)
        value, end = parsed
        if too_deep(self.buf, start, end):
            self.refuse(TOO_DEEP, what)
        if end - start > MAX_ROW_BYTES // 4 and len(self.buf[start:end].encode()) > MAX_ROW_BYTES:
            self.refuse(ROW_TOO_LONG, what)
        self.pos = end
        return value

    def _parse(self, start: int, what: str) -> tuple[Any, int] | None:
        """The value at `start` and where it ends; None when more text may mend a decode error."""
        try:
            return _DECODER.raw_decode(self.buf, start)
        except RecursionError:
            self.refuse(TOO_DEEP, what)
        except json.JSONDecodeError as exc:
            if self.eof or _inside(exc, len(self.buf)):
                self._invalid(exc.msg.removesuffix(" starting at"), exc.pos)
            return None
        except ValueError as exc:  # not a JSONDecodeError: int()'s limit on digits
            self.refuse(f"invalid JSON: {not_json_reason(exc)}", what)

    def fail(self, message: str, inside: str) -> NoReturn:
        """Invalid JSON at the cursor."""
        if self.pos >= len(self.buf):
            message = f"the file ends inside {inside} (is it truncated?)"
        self._invalid(message, self.pos)

    def refuse(self, message: str, what: str | None = None) -> NoReturn:
        where = f"{what}: " if what else ""
        raise UserError(f"{self._name}: {where}{message}")

    def _invalid(self, message: str, pos: int) -> NoReturn:
        newline = self.buf.rfind("\n", 0, pos)
        line = self._line + self.buf.count("\n", 0, pos) + 1
        column = pos - newline if newline >= 0 else self._column + pos + 1
        raise UserError(f"{self._name}: invalid JSON at line {line} column {column}: {message}")

    def _more(self, size: int) -> bool:
        """Read at least `size` more bytes, dropping the text before the cursor; False at the
        end of the file."""
        if self.eof:
            return False
        try:
            data = self._stream.read(max(size, _CHUNK))
        except READ_ERRORS as exc:
            raise UserError(f"{self._name}: cannot read: {one_line(exc)}") from None
        self._drop_read()
        self.buf += self._decode(data)
        self.eof = not data
        return bool(data)

    def _decode(self, data: bytes) -> str:
        pending = len(self._decoder.getstate()[0])
        try:
            text = self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            offset = self._bytes - pending + exc.start
            raise UserError(f"{self._name}: not UTF-8 text (byte {offset})") from None
        if self._bytes == 0:
            text = text.removeprefix("\ufeff")
        self._bytes += len(data)
        return text

    def _drop_read(self) -> None:
        newlines = self.buf.count("\n", 0, self.pos)
        if newlines:
            self._line += newlines
            self._column = self.pos - self.buf.rfind("\n", 0, self.pos) - 1
        else:
            self._column += self.pos
        self.buf = self.buf[self.pos :]
        self.pos = 0


def _inside(exc: json.JSONDecodeError, length: int) -> bool:
    """Whether the error is in the text, not at its end where more text could mend it."""
    return exc.pos < length - _TAIL and not exc.msg.startswith("Unterminated string")
