"""The assistant turn of reasoning records: chain cleaning, and the record models' own checks."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from distill.export.records import (
    ChainDrop,
    CleanChain,
    assistant_message,
    clean_chain,
    conversation,
    reasoning_content,
    user_prompt,
)
from schemas.export import (
    DirectRecord,
    ExportOptions,
    ReasoningRecord,
    RecordContext,
    TemplateMode,
)

CTX = RecordContext(
    think_open="<think>", think_close="</think>", answer_template="The answer is {letter}."
)
ANSWER_LINE = re.compile(r"The answer is [A-J]\.")


def assert_well_formed(content: str, ctx: RecordContext = CTX) -> None:
    """One open marker, the chain, one close marker, one answer line ending the turn."""
    assert content.count(ctx.think_open) == 1
    assert content.count(ctx.think_close) == 1
    assert content.startswith(ctx.think_open + "\n")
    answer_lines = [
        i for i, line in enumerate(content.split("\n")) if ANSWER_LINE.fullmatch(line.strip())
    ]
    assert len(answer_lines) == 1
    lines = content.split("\n")
    assert answer_lines[0] == len(lines) - 1  # the last line, nothing after it
    assert (
        content.index(ctx.think_open)
        < content.index(ctx.think_close)
        < content.rindex("The answer is")
    )


def test_clean_chain_keeps_a_plain_chain() -> None:
    cleaned = clean_chain("  First, A is wrong.\nSo the answer is B.\n", gold="B", ctx=CTX)
    assert cleaned == CleanChain("First, A is wrong.\nSo the answer is B.", 0, 0)


def test_stray_markers_are_removed_and_counted() -> None:
    cleaned = clean_chain("<think>\nStep one.</think> Step two <think>", gold="A", ctx=CTX)
    assert isinstance(cleaned, CleanChain)
    assert cleaned.text == "Step one. Step two"
    assert cleaned.stray_markers == 3


def test_markers_rebuilt_by_removal_are_removed_too() -> None:
    cleaned = clean_chain("x <thi<think>nk> y", gold="A", ctx=CTX)
    assert isinstance(cleaned, CleanChain)
    assert "<think>" not in cleaned.text


@pytest.mark.parametrize(
    "tail",
    [
        "The answer is C.",
        "\\boxed{C}",
        "$\\boxed{C}$",
        "**Final Answer**\n\\boxed{C}",
        "Final Answer: \\boxed{\\text{C}}",
        "The answer is C.\n\n\\[ \\boxed{C} \\]",
    ],
)
def test_trailing_answer_lines_are_removed(tail: str) -> None:
    cleaned = clean_chain(f"Options A and B are wrong.\n{tail}", gold="C", ctx=CTX)
    assert isinstance(cleaned, CleanChain)
    assert cleaned.text == "Options A and B are wrong."
    assert cleaned.trailing_lines >= 1


def test_trailing_answer_for_another_letter_drops_the_chain() -> None:
    assert clean_chain("Hmm.\nThe answer is D.", gold="C", ctx=CTX) is ChainDrop.conflicting_answer
    assert clean_chain("Hmm.\n\\boxed{A}", gold="C", ctx=CTX) is ChainDrop.conflicting_answer


def test_answer_line_mid_chain_drops_the_chain() -> None:
    text = "Maybe.\nThe answer is C.\nWait, let me check again, B could fit."
    assert clean_chain(text, gold="C", ctx=CTX) is ChainDrop.answer_line_inside


@pytest.mark.parametrize("text", [None, "", "  \n ", "<think></think>", "The answer is A."])
def test_empty_chains_are_dropped(text: str | None) -> None:
    assert clean_chain(text, gold="A", ctx=CTX) is ChainDrop.empty


def test_custom_markers_and_template() -> None:
    ctx = RecordContext(
        think_open="<reasoning>", think_close="</reasoning>", answer_template="Answer: ({letter})"
    )
    cleaned = clean_chain("<think>why</think>\nAnswer: (B)", gold="B", ctx=ctx)
    assert cleaned == CleanChain("why", 2, 1)
    content = reasoning_content("why", letter="B", ctx=ctx)
    assert content == "<reasoning>\nwhy\n</reasoning>\n\nAnswer: (B)"


_FRAGMENTS = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<thi",
        "nk>",
        "The answer is A.",
        "The answer is B.",
        "\\boxed{B}",
        "**Final Answer**",
        "\n",
        "\n\n",
        " ",
        "so B.",
        "Option C is wrong",
        "answer",
        "\r\n",
    ]
)
_TEXT = st.lists(st.one_of(_FRAGMENTS, st.text(max_size=12)), max_size=14).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=_TEXT, gold=st.sampled_from("ABCD"))
def test_any_cleaned_chain_gives_a_well_formed_turn(text: str, gold: str) -> None:
    cleaned = clean_chain(text, gold=gold, ctx=CTX)
    if not isinstance(cleaned, CleanChain):
        assert isinstance(cleaned, ChainDrop)
        return
    content = reasoning_content(cleaned.text, letter=gold, ctx=CTX)
    assert_well_formed(content)
    # ... and the record model, given the same context, agrees.
    _reasoning_record(cleaned.text, gold)


def _reasoning_record(chain: str, letter: str, **overrides: Any) -> ReasoningRecord:
    user = user_prompt("Which one?", ["w", "x", "y", "z"], [0, 1, 2, 3], ctx=CTX)
    data = {
        "id": "r1",
        "question_id": "uid",
        "subject": "math",
        **conversation(user, assistant_message(chain, letter=letter, ctx=CTX)),
        "answer": letter,
        "difficulty": 0.5,
        "curriculum_rank": 0,
        "reasoning_content": chain,
        "reasoning_tokens": None,
        "completion_tokens": 12,
        **overrides,
    }
    return ReasoningRecord.model_validate(data, context=CTX.as_context())


def test_reasoning_record_rejects_a_second_answer_line() -> None:
    with pytest.raises(ValidationError, match="answer line inside"):
        _reasoning_record("Hmm.\nThe answer is B.\nmore", "B")


def test_reasoning_record_rejects_content_that_disagrees_with_the_chain() -> None:
    user = user_prompt("Which one?", ["w", "x"], [0, 1], ctx=CTX)
    bad = {"role": "assistant", "content": "<think>\nother\n</think>\n\nThe answer is A."}
    with pytest.raises(ValidationError, match="open marker, chain, close, answer"):
        _reasoning_record("chain", "A", **conversation(user, bad))


def test_reasoning_content_mode_keeps_chain_apart() -> None:
    ctx = CTX.model_copy(update={"mode": TemplateMode.reasoning_content})
    message = assistant_message("why", letter="A", ctx=ctx)
    assert message == {
        "role": "assistant",
        "content": "The answer is A.",
        "reasoning_content": "why",
    }


def test_direct_record_must_hold_the_answer_line_of_its_letter() -> None:
    user = user_prompt("Which one?", ["w", "x", "y"], [2, 0, 1], ctx=CTX)
    data = {
        "id": "d",
        "question_id": "uid",
        "subject": "s",
        **conversation(user, {"role": "assistant", "content": "The answer is B."}),
        "answer": "C",
        "difficulty": 0.0,
    }
    with pytest.raises(ValidationError, match="exactly the answer line"):
        DirectRecord.model_validate(data, context=CTX.as_context())
    data["answer"] = "B"
    assert DirectRecord.model_validate(data, context=CTX.as_context()).answer == "B"


def test_answer_letter_must_be_an_option_of_the_prompt() -> None:
    user = user_prompt("Which one?", ["w", "x"], [0, 1], ctx=CTX)
    data = {
        "id": "d",
        "question_id": "uid",
        "subject": "s",
        **conversation(user, {"role": "assistant", "content": "The answer is D."}),
        "answer": "D",
        "difficulty": 0.0,
    }
    with pytest.raises(ValidationError, match="not among the prompt's options"):
        DirectRecord.model_validate(data, context=CTX.as_context())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"answer_template": "The answer is."}, "exactly once"),
        ({"answer_template": "{letter} or {letter}"}, "exactly once"),
        ({"answer_template": "Answer {letter} {x}"}, "no braces"),
        ({"think_open": "<t>", "think_close": "<t>x"}, "contain each other"),
        ({"answer_template": "<think> {letter}"}, "think marker"),
        ({"stages": 3, "curriculum": "none"}, "--curriculum none"),
        ({"think_open": " <t>"}, "whitespace"),
    ],
)
def test_export_options_are_validated(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ExportOptions.model_validate({"format": "both", "out": "x", **changes})


def test_balance_defaults_per_format() -> None:
    options = ExportOptions(format="both", out="x")
    assert options.balance_for("direct") and not options.balance_for("reasoning")
    options = ExportOptions(format="both", out="x", balance=False)
    assert not options.balance_for("direct")


def test_student_prompt_asks_for_the_answer_line_the_record_ends_with() -> None:
    user = user_prompt("Which one?", ["w", "x", "y"], [2, 0, 1], ctx=CTX)
    assert user.startswith("Which one?\n\nA. y\nB. w\nC. x\n\n")
    assert user.endswith(
        'End with the line "The answer is X.", where X is the letter of the correct option.'
    )
    # The teacher was asked for \boxed{}; the student is never asked for a format it is not shown.
    assert "boxed" not in user
    custom = CTX.model_copy(update={"answer_template": "Answer: {letter}"})
    assert 'End with the line "Answer: X"' in user_prompt("Q?", ["a", "b"], [0, 1], ctx=custom)
