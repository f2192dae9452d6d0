"""Question hygiene: near-duplicates kept once, and eval questions kept out (decontamination).

Text is compared after `schemas.mcq.normalise_text`, Unicode compatibility folding, case folding
and dropping everything but letters and digits, so "Fire-truck?" and "fire truck" agree. A
question is its stem *and* its options: MMLU alone has hundreds of "Which of the following is
true?" stems with different options, and those are different questions."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from schemas.mcq import normalise_text

logger = logging.getLogger(__name__)

NGRAM = 13  # words, as in the GPT-3 / open-r1 decontamination checks
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    if text.isascii():  # the common case, and NFC/NFKC change nothing in it
        return _WORD.findall(text.lower())
    folded = unicodedata.normalize("NFKC", normalise_text(text)).casefold()
    return _WORD.findall(folded)


def question_key(question: str, choices: Sequence[str]) -> str:
    """Equal for questions that differ only in case, punctuation, spacing or option order."""
    options = sorted("".join(words(c)) for c in choices)
    return "".join(words(question)) + "\x1f" + "\x1e".join(options)


def _ngrams(tokens: Sequence[str]) -> Iterable[int]:
    # Hashes, not tuples: a few million 13-grams of an eval set stay well under 100 MB. Python's
    # string hash is salted per process, which only matters for equality within this process.
    for i in range(len(tokens) - NGRAM + 1):
        yield hash(" ".join(tokens[i : i + NGRAM]))


def _question_words(question: str, choices: Sequence[str]) -> list[str]:
    tokens = words(question)
    for choice in choices:
        tokens.extend(words(choice))
    return tokens


def near_duplicates(questions: Iterable[tuple[int, str, Sequence[str]]]) -> set[int]:
    """Ids of (id, question, choices) whose normalised form an earlier (lower) id already has."""
    first: dict[str, int] = {}
    dropped: set[int] = set()
    for qid, question, choices in sorted(questions, key=lambda q: q[0]):
        key = question_key(question, choices)
        if key in first:
            dropped.add(qid)
        else:
            first[key] = qid
    return dropped


@dataclass(slots=True)
class EvalIndex:
    """The questions of some eval sets, as normalised keys and word 13-gram hashes."""

    keys: set[str] = field(default_factory=set)
    ngrams: set[int] = field(default_factory=set)
    questions: int = 0

    def add(self, question: str, choices: Sequence[str]) -> None:
        self.keys.add(question_key(question, choices))
        self.ngrams.update(_ngrams(_question_words(question, choices)))
        self.questions += 1

    def contains(self, question: str, choices: Sequence[str]) -> bool:
        if question_key(question, choices) in self.keys:
            return True
        return any(h in self.ngrams for h in _ngrams(_question_words(question, choices)))


def load_eval_index(paths: Sequence[Path], *, preset: str | None) -> EvalIndex:
    """Read eval files the way `distill import` reads question files (formats and presets)."""
    from distill.importers import load_mcqs

    index = EvalIndex()
    for path in paths:
        result = load_mcqs(str(path), preset=preset, skip_invalid=True)
        if result.rejected:
            logger.warning(
                "%s: %d unreadable rows ignored for decontamination", path, len(result.rejected)
            )
        for record in result.records:
            index.add(record.question, record.choices)
    return index
