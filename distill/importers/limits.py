"""The bounds every source format is held to, and the check every stored text field passes.

One limit per kind of thing, the same whatever the format: a text field (question, option,
answer, subject), one row as read (a JSON line, a CSV record, an element of a JSON list), and
JSON nesting. The field limit is what `csv.field_size_limit` allows by default, so no CSV file
that imported before is refused now; the row bound is what keeps a hostile or broken file (a
gzip bomb, a lost quote that swallows the rest of a CSV) from being read into memory whole."""

from __future__ import annotations

from typing import Any

# The field limit and the text rule are the schema's (MCQRecord holds every record to them);
# they are named here too, with the bounds on reading, for the readers and the row checks.
from schemas.mcq import MAX_FIELD_CHARS, text_problem

__all__ = [
    "MAX_FIELD_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_ROW_BYTES",
    "MAX_ROW_TEXT",
    "REPORT_PREVIEW_CHARS",
    "compact",
    "text_problem",
]

# Bytes in one row as read. Room for a question and ten options at the field limit, even when
# JSON escapes each character as \uXXXX; anything longer is broken or hostile input.
MAX_ROW_BYTES = 16 * 1024 * 1024
MAX_ROW_TEXT = f"{MAX_ROW_BYTES >> 20} MiB"
# Levels of JSON nesting in a row. A question needs four; deeper structures are refused before
# Python's recursive parser, repr and json.dumps would hit the interpreter's recursion limit.
MAX_JSON_DEPTH = 100
# A rejected row's strings over the field limit are cut to this many characters in the report.
REPORT_PREVIEW_CHARS = 1000


def compact(value: Any) -> Any:
    """`value` with strings over the field limit cut short, for a rejection report: such a row
    is refused for its size, and a copy of it in memory and in the report would be just as big.
    Nesting is bounded (MAX_JSON_DEPTH for JSON; a Parquet schema's depth otherwise)."""
    if isinstance(value, str):
        if len(value) <= MAX_FIELD_CHARS:
            return value
        return f"{value[:REPORT_PREVIEW_CHARS]}... ({len(value)} characters, cut in this report)"
    if isinstance(value, dict):
        return {key: compact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [compact(item) for item in value]
    return value
