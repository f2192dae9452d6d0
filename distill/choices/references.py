"""Options that refer to other options, found so that shuffling never changes what they mean.

About 4-5 % of MMLU questions have an option like "Both A and B", "(a) and (c)", "B and C only",
"Neither (a) nor (b)" (a *letter combination*: it names other options by their label) or "All of
the above", "None of these", "Neither of them" (a *list reference*: it names the list around it).
Permuting such a question's options silently changes its meaning and, often, its gold answer.

How an option is recognised (`detect`):

- A letter combination is an option whose *whole* text is labels joined by connectives, with
  optional qualifiers around them: "both", "neither", "only", "options", "are correct", "is true"
  ... Labels are letters A-J, Roman numerals I-X or numbers 1-10, bare, in parentheses or with a
  closing parenthesis, in any letter case. One label needs a qualifier ("A only", "only (b)"),
  two or more need nothing ("A, B and C"). An option with any other word in it is not a
  combination: "A and B are mutually exclusive events" (a probability question's answer) names
  events, not options, and is shuffled like any other.
- Labels that the *stem* enumerates ("I. ... II. ... III. ...", "(a) ... (b) ...", "statement 2")
  refer to the stem's statements, not to the options, and keep their meaning under any option
  order: "I and II only" in a Roman-numeral question does not pin anything. Letters are matched
  to the stem's labels case-sensitively, so "Both A and B" still refers to options when the stem
  enumerates "(a)" and "(b)".
- Labels that name no option of the question (E in a 4-option question) cannot refer to options.
- A list reference is an option made only of a quantifier ("all", "none", "both", "neither",
  "either", "any") and words that point at the list ("of the above", "of these", "of them",
  "the options", "are correct" ...), or one that contains "... of the above" / "the above"
  anywhere ("None of the above statements is true").

Erring matters in one direction only: treating an ordinary option as a reference costs a little
shuffling (its question keeps more of its original order), missing a reference corrupts the
record. Ambiguous cases are therefore read as references.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Sequence

from distill.choices.letters import LETTERS


class RefKind(enum.StrEnum):
    """What an option refers to; stored per option in `questions.option_refs`."""

    letters = "letters"  # other options by label: the question keeps its original order
    above = "above"  # the list as a whole: the option keeps its original position


_ROMAN_NUMERALS = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x")
_ROMAN = {numeral: value for value, numeral in enumerate(_ROMAN_NUMERALS, start=1)}

# One token: a parenthesised label "(a)", a label with a closing parenthesis or full stop "a)",
# "a.", a word, or a separator symbol.
_TOKENS = re.compile(
    r"\(\s*([A-Za-z]{1,4}|\d{1,2})\s*\)|([A-Za-z]{1,4}|\d{1,2})[).](?!\w)|(\w+)|([,&/+;])"
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_PREFIX = _words(
    "both neither either only just all any none of the options option choices choice answers "
    "answer statements statement alternatives alternative"
)
_SEPARATORS = frozenset({"and", "or", "nor", "plus", "with", ",", "&", "/", "+", ";"})
_MULTIWORD_SEPARATORS = (
    ("as", "well", "as"),
    ("but", "not"),
    ("together", "with"),
    ("and", "/", "or"),
    ("and", "or"),
)
_SUFFIX = _words(
    "only alone both together all are is correct true right valid incorrect false wrong "
    "answers answer options option statements statement the"
)
# Words a suffix must not consist of alone ("A and B are" is a cut-off sentence, not a qualifier).
_QUALIFIERS = _words(
    "both neither either only just alone together all any none correct true right valid "
    "incorrect false wrong options option choices choice answers answer statements statement "
    "alternatives alternative"
)

_QUANTIFIER = r"(?:all|none|both|neither|either|any)"
_LIST_WORDS = (
    r"(?:of|the|above|these|those|them|preceding|foregoing|previous|aforementioned|listed|"
    r"mentioned|given|other|options?|choices?|answers?|alternatives?|statements?|responses?|"
    r"are|is|correct|true|right|valid|apply|applies|mentioned)"
)
_LIST_WHOLE = re.compile(rf"(?:all|none|both|neither)|{_QUANTIFIER}(?:\s+{_LIST_WORDS})+")
_LIST_INSIDE = re.compile(
    rf"\b(?:(?:{_QUANTIFIER}|one|each)\s+(?:of\s+)?(?:the\s+)?(?:above|preceding|foregoing|aforementioned)"
    r"|(?:of|from)\s+the\s+above)\b"
)

# Labels the stem enumerates: "(a) ...", "I. ..." or "2) ..." at the start of a line or after a
# space or colon, "statement II". Capital letters, the options' own alphabet, count only in
# parentheses or at the start of a line: "vitamin A." ends a sentence, it enumerates nothing.
_LABEL = r"([A-Za-z]{1,4}|\d{1,2})"
_STEM_LABELS = (
    re.compile(rf"\(\s*{_LABEL}\s*\)"),
    re.compile(rf"(?:^|(?<=[\s:;]))\s*{_LABEL}[.):](?=\s)", re.MULTILINE),
    re.compile(rf"\b(?:statement|assertion|reason|item)\s+\(?{_LABEL}\)?", re.IGNORECASE),
)
_LINE_START = re.compile(rf"^\s*{_LABEL}[.):](?=\s)", re.MULTILINE)


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return " ".join(text.split()).strip().rstrip(".!?:;").strip()


def _label(token: str) -> str | None:
    """The token as a label (its own spelling), or None if it cannot be one."""
    if token.isdigit():
        return token if 1 <= int(token) <= 10 else None
    if len(token) == 1 and token.upper() in LETTERS:
        return token
    return token if token.lower() in _ROMAN else None


def _label_index(label: str) -> int:
    """The 0-based option a label names: A/a -> 0, II -> 1, 3 -> 2 (I is the letter I, the 9th
    option, and the numeral one; both readings are checked by the caller)."""
    if label.isdigit():
        return int(label) - 1
    if len(label) == 1 and label.upper() in LETTERS:
        return LETTERS.index(label.upper())
    return _ROMAN[label.lower()] - 1


def combination_labels(option: str) -> list[str] | None:
    """The labels a letter-combination option names ("Both (a) and (c)" -> ["a", "c"]), or None
    when the option is anything else."""
    text = _fold(option)
    if not text or len(text) > 80:
        return None
    tokens: list[tuple[str, bool]] = []  # (token, is a bracketed label)
    position = 0
    for match in _TOKENS.finditer(text):
        if text[position : match.start()].strip():
            return None  # a character no token covers: "A = B", "A's"
        position = match.end()
        bracketed, dotted, word, symbol = match.groups()
        if bracketed or dotted:
            tokens.append((bracketed or dotted, True))
        else:
            tokens.append((word or symbol, False))
    if text[position:].strip():
        return None
    words = [t.lower() if not bracketed else t for t, bracketed in tokens]
    i, n = 0, len(tokens)
    prefix: list[str] = []
    while i < n and not tokens[i][1] and words[i] in _PREFIX:
        # "A" and "I" are labels, not words, where a label can stand.
        prefix.append(words[i])
        i += 1
    labels: list[str] = []
    expect_label = True
    while i < n:
        token, bracketed = tokens[i]
        if expect_label:
            label = _label(token)
            if label is None:
                break
            labels.append(label)
            expect_label = False
            i += 1
            continue
        multi = next((m for m in _MULTIWORD_SEPARATORS if tuple(words[i : i + len(m)]) == m), None)
        if multi is not None:
            i += len(multi)
        elif words[i] in _SEPARATORS:
            i += 1
            if i < n and words[i] in ("and", "or"):  # ", and" / ", or"
                i += 1
        else:
            break
        expect_label = True
    if expect_label and labels:  # ends on a separator: "A and"
        return None
    suffix = words[i:]
    if any(w not in _SUFFIX for w in suffix):
        return None
    qualified = any(w in _QUALIFIERS for w in (*prefix, *suffix))
    if suffix and not any(w in _QUALIFIERS for w in suffix):
        return None
    if len(labels) >= 2 or (labels and qualified):
        return labels
    return None


def is_list_reference(option: str) -> bool:
    """ "All of the above", "None of these", "Neither of them", "Both", "None of the above
    statements is correct"."""
    text = _fold(option).lower()
    if not text:
        return False
    return _LIST_WHOLE.fullmatch(text) is not None or _LIST_INSIDE.search(text) is not None


def stem_labels(question: str) -> set[str]:
    """The labels the stem enumerates (at least two of them, or none): numerals in every case."""
    at_line_start = {m.group(1) for m in _LINE_START.finditer(question)}
    found: set[str] = set()
    for pattern in _STEM_LABELS:
        for match in pattern.finditer(question):
            label = match.group(1)
            if _label(label) is None:
                continue
            capital = len(label) == 1 and label in LETTERS and label.lower() not in _ROMAN
            if capital and pattern is _STEM_LABELS[1] and label not in at_line_start:
                continue
            found.add(label)
            if label.lower() in _ROMAN:
                found.update((label.upper(), label.lower()))
    return found if len({_label_index(label) for label in found}) >= 2 else set()


def _names_options(labels: Sequence[str], n_options: int, stem: set[str]) -> bool:
    if all(label in stem for label in labels):
        return False  # statements of the stem, not options
    return any(_label_index(label) < n_options for label in labels)


def detect(question: str, choices: Sequence[str]) -> list[RefKind | None] | None:
    """Per option, what it refers to; None when no option refers to another (the common case)."""
    kinds: list[RefKind | None] = [None] * len(choices)
    stem: set[str] | None = None
    for i, option in enumerate(choices):
        labels = combination_labels(option)
        if labels is not None:
            if stem is None:
                stem = stem_labels(question)
            if _names_options(labels, len(choices), stem):
                kinds[i] = RefKind.letters
                continue
        if is_list_reference(option):
            kinds[i] = RefKind.above
    return kinds if any(kinds) else None
