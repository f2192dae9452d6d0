"""Turn a source's gold-answer value into a 0-based option index.

Datasets write the gold answer in several ways: a letter ("B", "b", "(B)", "B."), a 0-based index
(2 or "2"), the text of the correct option, or (ARC, OpenBookQA, CommonsenseQA) the label of an
option, where labels may be digits ("1".."4") that must not be read as 0-based indices. `auto`
tries labels, then letters, then indices, then option text; the other formats force one reading
for the rare file where they disagree (numeric options with digit answers)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal, get_args

from distill.choices import LETTERS
from schemas.mcq import normalise_text

AnswerFormat = Literal["auto", "letter", "index", "text"]
ANSWER_FORMATS: tuple[AnswerFormat, ...] = get_args(AnswerFormat)

# "B", "b", "(B)", "B)", "B.", "B:" — the spellings answer keys use in the wild.
_LETTER = re.compile(r"^\(?\s*([A-Ja-j])\s*[).:]?$")
_DIGITS = re.compile(r"^[0-9]+$")


class AnswerError(ValueError):
    """The value names no option; the message says why, in words a user can act on."""


def show(value: object, limit: int = 60) -> str:
    """A short, single-line repr of a user's value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_answer(
    value: object,
    options: Sequence[str],
    *,
    labels: Sequence[str] | None = None,
    fmt: AnswerFormat = "auto",
) -> int:
    """The index into `options` that `value` designates; AnswerError if it designates none."""
    n = len(options)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise AnswerError("missing")
    if isinstance(value, bool):
        raise AnswerError(f"{value!r} is not a letter, an index or an option")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        if fmt in ("letter", "text"):
            raise AnswerError(f"{value!r} is not {_expected(fmt)}")
        return _index(value, n)
    if not isinstance(value, str):
        raise AnswerError(f"expected a letter, an index or option text, got {type(value).__name__}")

    text = value.strip()
    if not text:
        raise AnswerError("empty")
    if labels is not None and fmt in ("auto", "letter"):
        wanted = text.casefold()
        for i, label in enumerate(labels):
            if label.strip().casefold() == wanted:
                return i
    letter = _LETTER.match(text)
    if fmt == "letter" or (fmt == "auto" and letter):
        if not letter:
            raise AnswerError(f"{show(value)} is not {_expected(fmt)}")
        i = LETTERS.index(letter.group(1).upper())
        if i >= n:
            raise AnswerError(f"{show(value)} is not one of the {n} options")
        return i
    if fmt == "index" or (fmt == "auto" and _DIGITS.match(text)):
        if not _DIGITS.match(text):
            raise AnswerError(f"{show(value)} is not {_expected(fmt)}")
        return _index_of_digits(text, n)
    return _by_text(value, text, options)


def _by_text(value: object, text: str, options: Sequence[str]) -> int:
    """The option whose text the answer is: exactly (after normalisation), else ignoring case
    when that names one option only (`bb` is ambiguous among `BB`, `Bb`, `bB`)."""
    wanted = normalise_text(text)
    normalised = [normalise_text(option) for option in options]
    if wanted in normalised:
        return normalised.index(wanted)
    folded = [i for i, option in enumerate(normalised) if option.casefold() == wanted.casefold()]
    if len(folded) == 1:
        return folded[0]
    if folded:
        letters = ", ".join(LETTERS[i] for i in folded[:-1]) + f" and {LETTERS[folded[-1]]}"
        raise AnswerError(
            f"{show(value)} matches options {letters} when letter case is ignored, and none "
            "exactly; give the exact option text or a letter"
        )
    raise AnswerError(f"{show(value)} is not one of the {len(options)} options")


def _index_of_digits(text: str, n: int) -> int:
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(n)):  # out of range; and int() refuses thousands of digits
        shown = digits if len(digits) <= 20 else digits[:17] + "..."
        raise AnswerError(f"index {shown} is out of range for {n} options")
    return _index(int(digits), n)


def _index(i: int, n: int) -> int:
    if not 0 <= i < n:
        hint = " (indices are 0-based)" if i == n else ""  # the usual slip: a 1-based key
        raise AnswerError(f"index {i} is out of range for {n} options{hint}")
    return i


def _expected(fmt: AnswerFormat) -> str:
    return {
        "letter": "a letter A-J",
        "index": "a 0-based index",
        "text": "option text",
        "auto": "a letter, an index or an option",
    }[fmt]
