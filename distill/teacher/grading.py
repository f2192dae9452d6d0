"""Turn a parsed completion into an outcome (letters as presented; distill.choices maps them
back to the original options)."""

from __future__ import annotations

from distill.models import Outcome
from schemas.teacher import ParsedCompletion

# The two ways a generation ends on its own: the model's end of turn, or the token budget.
# Any other reason (vLLM's "abort" when the server shuts down with requests in flight, "error",
# "content_filter") says nothing about the question: it is retried, never graded. A server that
# sends no reason at all is graded on its text (an unclosed chain is still truncated), but such
# a generation is never exported as a reasoning record, which needs "stop".
RESULT_FINISH_REASONS = frozenset({"stop", "length"})


def is_result(finish_reason: str | None) -> bool:
    return finish_reason is None or finish_reason in RESULT_FINISH_REASONS


def grade(parsed: ParsedCompletion, *, finish_reason: str | None, gold_letter: str) -> Outcome:
    """The outcome of one generation; the rules are checked in this order.

    empty        no text and no reasoning, whitespace aside
    truncated    the server stopped on the token budget, or the chain never closed
    unparseable  the chain closed but no option letter follows it
    correct / incorrect  the letter against the gold letter (both as presented to the teacher)

    Only generations that ended on "stop" or "length" are graded (see is_result).
    """
    if not is_result(finish_reason):
        raise ValueError(f"finish_reason {finish_reason!r} is not a result; retry the request")
    if parsed.shape == "empty":
        return Outcome.empty
    if finish_reason == "length" or not _chain_closed(parsed):
        return Outcome.truncated
    if parsed.letter is None:
        return Outcome.unparseable
    return Outcome.correct if parsed.letter == gold_letter.upper() else Outcome.incorrect


def _chain_closed(parsed: ParsedCompletion) -> bool:
    # A server with a reasoning parser already cut the chain off; if it stopped on its own (not on
    # the budget, checked before) the chain ended even when no answer text followed it.
    return parsed.closed or parsed.shape == "separate_field"
