"""Read the think block and the answer letter out of a teacher completion.

Three layouts reach us: "<think>chain</think>answer" in the text, the same without the opening tag
(DeepSeek-R1's chat template opens "<think>\\n" in the prompt, so the model never writes it), and
the chain in a separate `reasoning_content`/`reasoning` field when the server runs a reasoning
parser. The letter is read only from the text after the chain: a chain is full of "maybe the answer
is B" that the model later rejects.
"""

from __future__ import annotations

import re

from distill.choices import LETTERS
from schemas.teacher import ParsedCompletion, ResponseShape, TeacherResult

DEFAULT_THINK_OPEN = "<think>"
DEFAULT_THINK_CLOSE = "</think>"

_BOXED_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"[{}]")
# LaTeX wrappers models put inside \boxed{}: \text{B}, \textbf{(B)}, \mathrm{B} ...
_LATEX_WRAPPER = re.compile(r"\\[A-Za-z]+\s*\{")
_OPTION_WORD = re.compile(r"^(?:option|choice)\s+", re.IGNORECASE)
_BOXED_LONE_LETTER = re.compile(r"\(?\s*([A-Za-z])\s*\)?\s*\.?")
# "B. option text", "(B) option text", "B) text", "B: text"
_BOXED_LETTER_THEN_TEXT = re.compile(r"\(?([A-Z])\s*(?:[.):\],]|\s*$)")

# "The answer is B", "answer is: (C)", "Answer: D.", "Final answer: A", "correct answer is option
# B" ... The word "answer" is matched in any case, the letter only as a capital: a lower-case
# letter after "answer is" is prose ("the answer is a ...").
_ANSWER_IS = re.compile(
    # Possessive quantifiers: no backtracking blow-up on long runs of whitespace.
    r"(?i:\banswer)\s*+(?:(?i:is)\s*+:?|:|=)\s*+"
    r"(?:(?i:option|choice)\s++)?"
    r"[(\[]?\s*+([A-Z])(?:\s*+[)\]])?"
    r"(?![A-Za-z0-9])"
    r"(\s++[a-z]+)?"
)
# "A" and "I" are also English words: "The answer is I think C" must not yield I. A connective
# after the letter still reads as an answer ("The answer is A because ...").
_WORD_LETTERS = frozenset("AI")
_CONNECTIVES = frozenset({"because", "since", "as", "and", "so", "which", "for", "with", "from"})
# Markdown and math decoration around an answer line: "**Answer:** B", "answer is $B$".
_DECORATION = re.compile(r"[*`$]")


def extract_letter(answer_text: str, n_options: int) -> str | None:
    """The option letter the answer text commits to, or None.

    The last `\\boxed{...}` wins; without one, the last "answer is X" / "Answer: X". A letter
    beyond the question's options means no letter (the model answered something else).
    """
    letter = _last_boxed_letter(answer_text)
    if letter is None:
        letter = _last_answer_is_letter(answer_text)
    if letter is None or letter not in LETTERS[:n_options]:
        return None
    return letter


def _boxed_contents(text: str) -> list[str]:
    """The contents of every complete \\boxed{...}, braces balanced, by position of the box.

    One pass with a brace stack, so a long answer full of unclosed boxes stays linear.
    """
    content_starts = {m.end() - 1: m.end() for m in _BOXED_START.finditer(text)}
    if not content_starts:
        return []
    stack: list[int | None] = []
    found: list[tuple[int, str]] = []
    for brace in _BRACE.finditer(text):
        if brace.group() == "{":
            stack.append(content_starts.get(brace.start()))
        elif stack:
            start = stack.pop()
            if start is not None:
                found.append((start, text[start : brace.start()]))
    return [content for _, content in sorted(found)]


def _letter_in_box(content: str) -> str | None:
    inner = _LATEX_WRAPPER.sub("", content).replace("{", "").replace("}", "")
    inner = _OPTION_WORD.sub("", inner.strip(" \t\n*$"))
    lone = _BOXED_LONE_LETTER.fullmatch(inner)
    if lone:
        # A box holding a single letter is unambiguous whatever its case: \boxed{b}.
        return lone.group(1).upper()
    with_text = _BOXED_LETTER_THEN_TEXT.match(inner)
    return with_text.group(1) if with_text else None


def _last_boxed_letter(text: str) -> str | None:
    boxes = _boxed_contents(text)
    for content in reversed(boxes):
        letter = _letter_in_box(content)
        if letter is not None:
            return letter
    return None


def _last_answer_is_letter(text: str) -> str | None:
    found: str | None = None
    for match in _ANSWER_IS.finditer(_DECORATION.sub("", text)):
        letter, next_word = match.group(1), match.group(2)
        if (
            letter in _WORD_LETTERS
            and next_word is not None
            and next_word.strip() not in _CONNECTIVES
        ):
            continue
        found = letter
    return found


def parse_completion(
    source: TeacherResult | str,
    *,
    reasoning_content: str | None = None,
    think_open: str = DEFAULT_THINK_OPEN,
    think_close: str = DEFAULT_THINK_CLOSE,
    n_options: int,
) -> ParsedCompletion:
    """Split a completion into reasoning and answer and read the answer letter.

    `source` is a TeacherResult, or the message text with the separate reasoning field (if any)
    passed as `reasoning_content`. Never raises on odd text: whatever cannot be read becomes
    None fields, and grading turns that into an outcome.
    """
    if isinstance(source, TeacherResult):
        if reasoning_content is not None:
            raise ValueError("pass reasoning_content only with a text, not with a TeacherResult")
        text, reasoning_content = source.text, source.reasoning_content
    else:
        text = source

    if reasoning_content is not None and reasoning_content.strip():
        return _parse_separate_field(text, reasoning_content, think_close, n_options)
    if not text.strip():
        return ParsedCompletion(
            shape="empty", closed=False, reasoning=None, answer_text=None, letter=None
        )

    head, marker, tail = text.rpartition(think_close)
    if not marker:
        # No close marker: an unfinished chain (or a model that does not think at all).
        shape: ResponseShape = "tagged" if _opens_with(text, think_open) else "no_marker"
        return ParsedCompletion(
            shape=shape,
            closed=False,
            reasoning=_strip_open(text, think_open).strip() or None,
            answer_text=None,
            letter=None,
        )
    shape = "tagged" if _opens_with(head, think_open) else "open_tag_omitted"
    answer_text = tail.strip()
    return ParsedCompletion(
        shape=shape,
        closed=True,
        reasoning=_strip_open(head, think_open).strip() or None,
        answer_text=answer_text,
        letter=extract_letter(answer_text, n_options),
    )


def _parse_separate_field(
    text: str, reasoning_content: str, think_close: str, n_options: int
) -> ParsedCompletion:
    # The server already split the chain off; a close marker left in the content (seen with some
    # parser/template pairs) still separates leftovers of the chain from the answer.
    answer_text = text.rpartition(think_close)[2].strip()
    return ParsedCompletion(
        shape="separate_field",
        # vLLM's reasoning parsers leave the content null until they see the close marker, so an
        # answer after the chain is what shows the chain ended.
        closed=bool(answer_text),
        reasoning=reasoning_content.strip(),
        answer_text=answer_text,
        letter=extract_letter(answer_text, n_options),
    )


def _opens_with(text: str, think_open: str) -> bool:
    return text.lstrip().startswith(think_open)


def _strip_open(text: str, think_open: str) -> str:
    stripped = text.lstrip()
    return stripped[len(think_open) :] if stripped.startswith(think_open) else text
