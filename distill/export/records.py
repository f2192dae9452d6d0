"""The assistant turn a student learns from, and the records that carry it.

A reasoning turn is `{open}\\n{chain}\\n{close}\\n\\n{answer line}`: one open marker, the chain, one
close marker, one canonical answer line, nothing after it. A student trained on anything looser
learns to keep thinking after the close marker, or to answer twice. `clean_chain` repairs what
can be repaired (stray markers, a trailing answer or \\boxed line that would duplicate the
canonical one) and rejects the rest with a reason that the dataset card counts."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from distill.choices import presented
from distill.prompts import render_student_prompt
from schemas.export import RecordContext, TemplateMode

# Markers the teacher itself writes; stripped from chains whatever the export's markers are.
TEACHER_MARKERS = ("<think>", "</think>")


class ChainDrop(enum.StrEnum):
    """Why a correct generation's chain cannot become a record (card labels in card.py)."""

    empty = "empty"
    answer_line_inside = "answer_line_inside"
    conflicting_answer = "conflicting_answer"


@dataclass(frozen=True, slots=True)
class CleanChain:
    text: str
    stray_markers: int  # marker occurrences removed
    trailing_lines: int  # trailing answer / \boxed / "Final Answer" lines removed


# A line that only boxes an answer, maybe behind "Final Answer:", maybe inside $...$ or \[...\].
_DECOR = r"[\s*#>_`$:.()\[\]\\]*"
_BOXED_LINE = re.compile(
    rf"{_DECOR}(?:final\s+answer{_DECOR})?\\boxed\s*\{{\s*(?:\\text(?:bf)?\s*\{{\s*)?"
    rf"(?:option\s+|choice\s+)?\(?(?P<letter>[A-Ja-j])?\b[^\n]*\}}{_DECOR}",
    re.IGNORECASE,
)
_FINAL_ANSWER_HEADER = re.compile(rf"{_DECOR}final\s+answer{_DECOR}", re.IGNORECASE)


def _strip_markers(text: str, markers: Sequence[str]) -> tuple[str, int]:
    removed = 0
    # Removing one marker can join the halves of another ("<thi<think>nk>"): repeat to a fixpoint.
    while True:
        found = [m for m in markers if m in text]
        if not found:
            return text, removed
        for marker in found:
            removed += text.count(marker)
            text = text.replace(marker, "")


def clean_chain(reasoning: str | None, *, gold: str, ctx: RecordContext) -> CleanChain | ChainDrop:
    """The chain ready for the think block, or why it cannot be used."""
    if reasoning is None:
        return ChainDrop.empty
    markers = tuple(dict.fromkeys((ctx.think_open, ctx.think_close, *TEACHER_MARKERS)))
    text, stray = _strip_markers(reasoning, markers)
    answer_line = ctx.answer_line_pattern()
    text = text.strip()
    trailing = 0
    while text:
        head, _, last = text.rpartition("\n")
        last = last.strip()
        letter: str | None
        if (canonical := answer_line.fullmatch(last)) is not None:
            letter = canonical.group("letter")
        elif (boxed := _BOXED_LINE.fullmatch(last)) is not None:
            letter = (boxed.group("letter") or "").upper() or None
        elif _FINAL_ANSWER_HEADER.fullmatch(last):
            letter = None
        else:
            break
        if letter is not None and letter != gold:
            return ChainDrop.conflicting_answer
        text = head.rstrip()
        trailing += 1
    if ctx.has_answer_line(text):
        # An answer line mid-chain (then more thinking): removing it would edit the reasoning.
        return ChainDrop.answer_line_inside
    chain = text
    if not chain:
        return ChainDrop.empty
    return CleanChain(chain, stray, trailing)


def reasoning_content(chain: str, *, letter: str, ctx: RecordContext) -> str:
    return f"{ctx.think_open}\n{chain}\n{ctx.think_close}\n\n{ctx.answer_line(letter)}"


def user_prompt(
    question: str, choices: Sequence[str], order: Sequence[int], *, ctx: RecordContext
) -> str:
    """The user turn: the question with the options in the order the teacher saw them
    (re-rendered after balancing, so prompt and answer letter always agree), asking for the
    answer line the record ends with."""
    return render_student_prompt(
        question, presented(choices, order), answer_example=ctx.answer_line("X")
    )


def conversation(user: str, assistant: dict[str, Any]) -> dict[str, Any]:
    """The TRL conversational columns: messages, and the same turns as prompt / completion."""
    user_msg = {"role": "user", "content": user}
    return {"messages": [user_msg, assistant], "prompt": [user_msg], "completion": [assistant]}


def assistant_message(chain: str | None, *, letter: str, ctx: RecordContext) -> dict[str, Any]:
    if chain is None:
        return {"role": "assistant", "content": ctx.answer_line(letter)}
    if ctx.mode is TemplateMode.reasoning_content:
        return {
            "role": "assistant",
            "content": ctx.answer_line(letter),
            "reasoning_content": chain,
        }
    return {"role": "assistant", "content": reasoning_content(chain, letter=letter, ctx=ctx)}
