"""Outcomes of parsed completions, and letters mapped back to the original choice order."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distill.choices import LETTERS
from distill.models import Outcome
from distill.prompts import render_user_prompt
from distill.teacher.grading import grade
from distill.teacher.parsing import parse_completion
from tests.support.fake_openai import fake_reply

CLOSED_B = "chain, maybe \\boxed{A}\n</think>\n\nThe answer is \\boxed{B}."


@pytest.mark.parametrize(
    ("text", "reasoning", "finish", "outcome"),
    [
        # empty: nothing but whitespace anywhere, whatever the finish reason
        ("", None, "stop", Outcome.empty),
        ("  \n", None, "length", Outcome.empty),
        ("", "   ", "stop", Outcome.empty),
        # truncated: the budget ran out, or the chain never closed
        (CLOSED_B, None, "length", Outcome.truncated),
        ("still thinking about \\boxed{B}", None, "stop", Outcome.truncated),
        ("<think>\nstill thinking", None, "length", Outcome.truncated),
        ("", "chain cut by the budget", "length", Outcome.truncated),
        ("The answer is", "chain", "length", Outcome.truncated),
        # unparseable: closed, no letter after the close marker
        ("The answer is \\boxed{B}.\n</think>\n\nNo idea.", None, "stop", Outcome.unparseable),
        ("chain</think>\n\n\\boxed{E}", None, "stop", Outcome.unparseable),  # beyond 4 options
        ("", "a chain the server closed", "stop", Outcome.unparseable),  # separate field, stop
        ("I cannot tell.", "chain", "stop", Outcome.unparseable),
        # correct / incorrect against gold B
        (CLOSED_B, None, "stop", Outcome.correct),
        ("<think>\n" + CLOSED_B, None, "stop", Outcome.correct),
        ("The answer is B.", "chain", "stop", Outcome.correct),
        ("chain</think>Answer: C", None, "stop", Outcome.incorrect),
        ("The answer is \\boxed{A}.", "chain", "stop", Outcome.incorrect),
        ("The answer is \\boxed{A}.", "chain", None, Outcome.incorrect),  # server sent no reason
    ],
)
def test_outcome_table(text: str, reasoning: str | None, finish: str, outcome: Outcome) -> None:
    parsed = parse_completion(text, reasoning_content=reasoning, n_options=4)
    assert grade(parsed, finish_reason=finish, gold_letter="B") == outcome


def test_gold_letter_case_does_not_matter() -> None:
    parsed = parse_completion(CLOSED_B, n_options=4)
    assert grade(parsed, finish_reason="stop", gold_letter="b") == Outcome.correct


# --- agreement with the fake teacher's oracle (what pipeline tests rely on) ---------------------


@given(
    question=st.text(min_size=1),
    n_options=st.integers(min_value=2, max_value=len(LETTERS)),
    max_tokens=st.integers(min_value=1, max_value=120),
    data=st.data(),
)
def test_grading_agrees_with_the_fake_teacher(
    question: str, n_options: int, max_tokens: int, data: st.DataObject
) -> None:
    prompt = render_user_prompt(question, [f"option {i}" for i in range(n_options)])
    reply = fake_reply(prompt, max_tokens)
    gold = data.draw(st.sampled_from(LETTERS[:n_options]))
    parsed = parse_completion(reply.text, n_options=n_options)
    assert grade(parsed, finish_reason=reply.finish_reason, gold_letter=gold) == (
        reply.expected_outcome(gold)
    )
    assert reply.completion_tokens <= max_tokens


def test_fake_teacher_outcome_mix() -> None:
    kinds = Counter(
        fake_reply(render_user_prompt(f"Question {i}?", ["a", "b", "c", "d"]), 4096).kind
        for i in range(2000)
    )
    shares = {kind: n / 2000 for kind, n in kinds.items()}
    assert shares["answer"] == pytest.approx(0.75, abs=0.05)
    assert shares["unclosed"] == pytest.approx(0.10, abs=0.03)
    assert shares["no_letter"] == pytest.approx(0.10, abs=0.03)
    assert shares["empty"] == pytest.approx(0.05, abs=0.02)


def test_fake_teacher_answers_from_the_options_block_only() -> None:
    # A question that quotes lettered lines of its own must not widen the options.
    for i in range(100):
        question = f"Which statement {i} holds?\nA. one\nE. five\nJ. ten"
        reply = fake_reply(render_user_prompt(question, ["w", "x", "y", "z"]), 4096)
        assert reply.letter is None or reply.letter in "ABCD"


@pytest.mark.parametrize("finish", ["abort", "error", "repetition"])
def test_a_generation_the_server_ended_is_not_graded(finish: str) -> None:
    parsed = parse_completion("chain</think>The answer is B.", n_options=4)
    with pytest.raises(ValueError, match="not a result"):
        grade(parsed, finish_reason=finish, gold_letter="B")
