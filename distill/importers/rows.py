"""Turn one source row into a validated MCQRecord, or say which field is wrong and why.

The checks MCQRecord also makes (empty question, option count) are made here first so the error
can name the source's own column; MCQRecord then validates the result, so nothing reaches the
database that the schema would refuse. What it alone checks on the hot path (duplicate options,
text it cannot store: over the field limit, NUL, lone surrogates) is traced to the option and
column when it fails."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import String

from distill.choices import LETTERS
from distill.choices.references import is_list_reference
from distill.importers.answers import AnswerError, resolve_answer, show
from distill.importers.jsontext import TOO_DEEP, JSONTextError, parse_json
from distill.importers.layout import Layout
from distill.importers.limits import MAX_FIELD_CHARS, text_problem
from distill.models import Question
from schemas.mcq import MAX_OPTIONS, MIN_OPTIONS, MCQRecord, normalise_label, normalise_text


def column_length(name: str) -> int:
    """The declared length of a String column of `questions`: longer values would fail on
    PostgreSQL (SQLite does not check), so rows are checked against it here."""
    column_type = Question.__table__.c[name].type
    assert isinstance(column_type, String)
    assert column_type.length is not None
    return column_type.length


SUBJECT_MAX = column_length("subject")


class RowError(ValueError):
    """A row that cannot become a question; `field` names the source column at fault."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def to_record(
    data: Mapping[str, Any], layout: Layout, *, subject: str | None, source: str
) -> MCQRecord:
    """The row as an MCQRecord; RowError if any field is missing or invalid."""
    question = _text(data, layout.question)
    options, labels, fields = _options(data, layout)
    listed = options
    if layout.answer is None:
        options, answer_index = _shuffle_gold_first(question, options)
    else:
        if layout.answer not in data:
            raise RowError(layout.answer, "missing")
        answer = data[layout.answer]
        if isinstance(answer, str) and (problem := _answer_problem(answer)):
            raise RowError(layout.answer, problem)
        try:
            answer_index = resolve_answer(answer, options, labels=labels, fmt=layout.answer_format)
        except AnswerError as exc:
            raise RowError(layout.answer, str(exc)) from None
    try:
        return MCQRecord(
            question=question,
            choices=options,
            answer_index=answer_index,
            subject=subject or _subject(data, layout),
            source=source,
        )
    except ValidationError as exc:
        # Empty and duplicate options are left to MCQRecord (the hot path stays one pass);
        # this names the option and its column when that is what failed.
        _check_options(listed, fields)
        error = exc.errors()[0]
        where = error["loc"][0] if error["loc"] else "answer_index"
        field = {
            "question": layout.question,
            "choices": fields[0],
            "subject": layout.subject,
        }.get(str(where), layout.answer)
        raise RowError(field, str(error["msg"]).removeprefix("Value error, ")) from None


def _answer_problem(answer: str) -> str | None:
    """The answer is not stored, but read like the other text fields, to one limit."""
    if len(answer) > MAX_FIELD_CHARS or "\x00" in answer or not answer.isascii():
        return text_problem(answer)
    return None


def _text(data: Mapping[str, Any], field: str) -> str:
    if field not in data or data[field] is None:
        raise RowError(field, "missing")
    value = data[field]
    if not isinstance(value, str):
        raise RowError(field, f"expected text, got {type(value).__name__} {show(value)}")
    if not value.strip():
        raise RowError(field, "empty")
    return value


def _options(
    data: Mapping[str, Any], layout: Layout
) -> tuple[list[str], list[str] | None, list[str]]:
    """The options, their labels (if the source labels them) and the column holding each."""
    labels: list[str] | None = None
    if len(layout.choices) == 1:
        field = layout.choices[0]
        raw, labels = _option_list(data, field)
        fields = [field] * max(len(raw), MAX_OPTIONS + 1)
    else:
        fields = list(layout.choices)
        raw = [data.get(field) for field in fields]
        while raw and _blank(raw[-1]):  # fewer options than columns: trailing cells are empty
            raw.pop()
    if all(type(value) is str for value in raw):
        options: list[str] = raw
    else:
        options = [_option(value, fields[i], i) for i, value in enumerate(raw)]
    if len(options) < MIN_OPTIONS:
        where = fields[min(len(options), len(fields) - 1)]
        count = f"{len(options)} option" + ("" if len(options) == 1 else "s")
        raise RowError(where, f"{count}; a question needs {MIN_OPTIONS} to {MAX_OPTIONS}")
    if len(options) > MAX_OPTIONS:
        raise RowError(fields[MAX_OPTIONS], f"{len(options)} options; at most {MAX_OPTIONS}")
    return options, labels, fields


def _check_options(options: list[str], fields: list[str]) -> None:
    """RowError naming the first empty, unstorable (schemas.mcq.text_problem) or repeated
    option, if there is one. Options are the same only when their text is, after Unicode and
    whitespace normalisation: `BB Bb` and `Bb Bb`, `II` and `ii` are different options."""
    seen: dict[str, int] = {}
    for i, option in enumerate(options):
        if _blank(option):
            raise RowError(fields[i], f"option {LETTERS[i]} is empty")
        problem = text_problem(option.strip())
        if problem is not None:
            raise RowError(fields[i], f"option {LETTERS[i]}: {problem}")
        key = normalise_text(option)
        if key in seen:
            raise RowError(
                fields[i],
                f"duplicate options: {LETTERS[seen[key]]} and {LETTERS[i]} are both {show(key)}",
            )
        seen[key] = i


def _option_list(data: Mapping[str, Any], field: str) -> tuple[list[Any], list[str] | None]:
    if field not in data or data[field] is None:
        raise RowError(field, "missing")
    value = data[field]
    if isinstance(value, str):
        try:
            value = parse_json(value) if value.lstrip().startswith(("[", "{")) else value
        except JSONTextError as exc:
            if exc.message == TOO_DEEP:
                raise RowError(field, TOO_DEEP) from None
            raise RowError(
                field, "expected a list of options; this text is not a JSON list"
            ) from None
    if isinstance(value, str):
        raise RowError(
            field, "expected a list of options (for one option per column, name every column)"
        )
    if isinstance(value, Mapping):
        texts, labels = value.get("text"), value.get("label")
        if not isinstance(texts, Sequence) or isinstance(texts, str):
            raise RowError(field, 'expected a list, or {"text": [...], "label": [...]}')
        if labels is None:
            return list(texts), None
        if not isinstance(labels, Sequence) or isinstance(labels, str) or len(labels) != len(texts):
            raise RowError(field, f"{len(texts)} option texts but labels {show(labels)}")
        return list(texts), [str(label) for label in labels]
    if isinstance(value, Sequence):
        return list(value), None
    raise RowError(field, f"expected a list of options, got {type(value).__name__}")


def _option(value: object, field: str, i: int) -> str:
    letter = LETTERS[i] if i < len(LETTERS) else str(i)
    if _blank(value):
        raise RowError(field, f"option {letter} is empty")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowError(field, f"option {letter} is {type(value).__name__}, not text")
    return value if isinstance(value, str) else str(value)


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _subject(data: Mapping[str, Any], layout: Layout) -> str:
    value = data.get(layout.subject) if layout.subject else None
    if _blank(value):
        return layout.default_subject
    if type(value) is not str:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RowError(
                layout.subject, f"expected text, got {type(value).__name__} {show(value)}"
            )
        value = str(value)
    text = normalise_label(value)
    if len(text) > SUBJECT_MAX:
        raise RowError(layout.subject, f"longer than {SUBJECT_MAX} characters")
    return text  # MCQRecord refuses what cannot be stored; to_record names the field


def _shuffle_gold_first(question: str, options: list[str]) -> tuple[list[str], int]:
    """Shuffle options whose first is the gold one; seeded by the question, so re-imports agree
    and the gold letter is spread over A-D instead of always A. Such a source's order means
    nothing, but an "All of the above" among its options only means something last: list
    references go to the end, in the order they came."""
    digest = hashlib.sha256(normalise_text(question).encode()).digest()
    order = list(range(len(options)))
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    last = {i for i, option in enumerate(options) if is_list_reference(option)}
    order = [i for i in order if i not in last] + sorted(last)
    return [options[i] for i in order], order.index(0)
