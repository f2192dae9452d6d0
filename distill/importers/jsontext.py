"""JSON text parsed without the ways Python's parser fails on hostile input: nesting deep enough
to raise RecursionError, and numbers too long for int() (a ValueError that is not a
JSONDecodeError). Both become a JSONTextError whose message a user can act on."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from distill.importers.limits import MAX_JSON_DEPTH

# A JSON string, escapes included (unrolled so it runs in linear time on long strings).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
TOO_DEEP = f"JSON nested more than {MAX_JSON_DEPTH} levels deep"


class JSONTextError(ValueError):
    """Text that is not JSON we read; `message` says why, `pos` where (when known)."""

    def __init__(self, message: str, pos: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def too_deep(text: str, start: int = 0, end: int | None = None) -> bool:
    """Whether the JSON in text[start:end] nests more than MAX_JSON_DEPTH levels. Counting
    brackets settles nearly every row at C speed; only a row with more brackets than the limit
    (brackets inside strings count there) is scanned properly."""
    stop = len(text) if end is None else end
    if text.count("[", start, stop) + text.count("{", start, stop) <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text[start:stop])):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            return True
    return False


def parse_json(text: str) -> Any:
    """json.loads(text); JSONTextError if it is not JSON, or is JSON this importer refuses."""
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and too_deep(text):
        raise JSONTextError(TOO_DEEP)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        message = exc.msg.removesuffix(" at")  # "Unterminated string starting at"
        raise JSONTextError(f"invalid JSON: {message} at column {exc.colno}", exc.pos) from None
    except ValueError as exc:
        raise JSONTextError(f"invalid JSON: {not_json_reason(exc)}") from None


def not_json_reason(exc: ValueError) -> str:
    """What json's non-JSONDecodeError ValueErrors mean. The one seen in practice is int()'s
    limit on digits; its message advises a call to sys.set_int_max_str_digits(), which is no
    advice for a user of this tool."""
    if "digits" in str(exc):
        return f"a number with more than {sys.get_int_max_str_digits()} digits"
    return " ".join(str(exc).split())[:200]
