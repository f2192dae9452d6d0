"""Reading the think block and the answer letter out of teacher completions."""

from __future__ import annotations

import time

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from distill.choices import LETTERS
from distill.teacher.parsing import extract_letter, parse_completion
from schemas.teacher import TeacherResult

# --- extract_letter -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("\\boxed{B}", "B"),
        ("The answer is \\boxed{\\text{C}}.", "C"),
        ("\\boxed{(D)}", "D"),
        ("\\boxed{B. Paris}", "B"),
        ("\\boxed{(C) 42 kg}", "C"),
        ("\\boxed{\\textbf{(A)}}", "A"),
        ("\\boxed{ b }", "B"),
        ("$\\boxed{\\text{Option C}}$", "C"),
        ("\\[\n\\boxed{D}\n\\]", "D"),
        ("First \\boxed{A}, but on reflection \\boxed{C}.", "C"),
        ("The answer is B. Hmm, \\boxed{D}.", "D"),  # a box beats "answer is"
        ("\\boxed{42} so the answer is B", "B"),  # a box without a letter is no answer
        ("The answer is B", "B"),
        ("The answer is B.", "B"),
        ("the answer is (C).", "C"),
        ("The answer is: D", "D"),
        ("answer is:D", "D"),
        ("Answer: A", "A"),
        ("ANSWER: B", "B"),
        ("**Answer:** B", "B"),
        ("**Answer: C**", "C"),
        ("The answer is **D**.", "D"),
        ("The answer is $B$.", "B"),
        ("Final answer: D.", "D"),
        ("Final Answer: (A)", "A"),
        ("The correct answer is option B.", "B"),
        ("The answer is [C]", "C"),
        ("The answer is A because water boils first.", "A"),
        ("The answer is B. Actually, the answer is C.", "C"),
        ("The answer is\n\nB", "B"),
    ],
)
def test_extract_letter_finds_the_answer(answer: str, letter: str) -> None:
    assert extract_letter(answer, 4) == letter


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "A good idea is to check each option.",
        "I think so. Both B and C look fine.",
        "The answer is I think unclear.",
        "The answer is a matter of definition.",
        "The answer is Paris.",
        "The answer is E.",  # beyond four options
        "\\boxed{E}",
        "\\boxed{42}",
        "\\boxed{Paris}",
        "\\boxed{B",  # never closed
        "Answers: B and C are both wrong",
        "B",  # a bare letter is prose, not a committed answer
    ],
)
def test_extract_letter_finds_nothing(answer: str) -> None:
    assert extract_letter(answer, 4) is None


def test_extract_letter_respects_the_number_of_options() -> None:
    assert extract_letter("\\boxed{J}", 10) == "J"
    assert extract_letter("\\boxed{J}", 9) is None
    assert extract_letter("The answer is C.", 2) is None


def test_extract_letter_is_fast_on_pathological_text() -> None:
    nasty = "The answer is" + " " * 50_000 + "x" + "\\boxed{" * 20_000 + "answer is (" * 5_000
    started = time.monotonic()
    assert extract_letter(nasty, 4) is None
    assert time.monotonic() - started < 2


# --- parse_completion: the three shapes ---------------------------------------------------------


def test_tagged() -> None:
    parsed = parse_completion(
        "<think>\nB looks wrong; maybe \\boxed{A}.\n</think>\n\nThe answer is \\boxed{C}.",
        n_options=4,
    )
    assert parsed.shape == "tagged"
    assert parsed.closed
    assert parsed.reasoning == "B looks wrong; maybe \\boxed{A}."
    assert parsed.answer_text == "The answer is \\boxed{C}."
    assert parsed.letter == "C"


def test_open_tag_omitted() -> None:
    parsed = parse_completion("Okay, so.\n</think>\n\n**Answer:** D", n_options=4)
    assert (parsed.shape, parsed.closed, parsed.letter) == ("open_tag_omitted", True, "D")
    assert parsed.reasoning == "Okay, so."


def test_letter_is_never_taken_from_the_reasoning() -> None:
    parsed = parse_completion(
        "The answer is \\boxed{A}.\n</think>\n\nI cannot decide.", n_options=4
    )
    assert parsed.closed
    assert parsed.letter is None
    assert parsed.answer_text == "I cannot decide."


@pytest.mark.parametrize(
    ("text", "shape", "reasoning"),
    [
        ("Okay, the answer is \\boxed{A}", "no_marker", "Okay, the answer is \\boxed{A}"),
        ("<think>\nhmm, \\boxed{B}", "tagged", "hmm, \\boxed{B}"),
        ("  <think>", "tagged", None),
    ],
)
def test_unclosed_chain_has_no_answer(text: str, shape: str, reasoning: str | None) -> None:
    parsed = parse_completion(text, n_options=4)
    assert (parsed.shape, parsed.closed, parsed.reasoning) == (shape, False, reasoning)
    assert parsed.answer_text is None
    assert parsed.letter is None


def test_separate_field() -> None:
    parsed = parse_completion(
        "\n\nThe answer is \\boxed{B}.", reasoning_content="A? No, \\boxed{C}?", n_options=4
    )
    assert parsed.shape == "separate_field"
    assert parsed.closed
    assert parsed.reasoning == "A? No, \\boxed{C}?"
    assert (parsed.answer_text, parsed.letter) == ("The answer is \\boxed{B}.", "B")


def test_separate_field_without_content_is_not_visibly_closed() -> None:
    parsed = parse_completion("", reasoning_content="Still thinking", n_options=4)
    assert (parsed.shape, parsed.closed, parsed.answer_text, parsed.letter) == (
        "separate_field",
        False,
        "",
        None,
    )


def test_separate_field_with_a_leftover_close_marker_in_the_content() -> None:
    parsed = parse_completion(
        "tail of chain \\boxed{A}</think>\n\nAnswer: C", reasoning_content="chain", n_options=4
    )
    assert (parsed.answer_text, parsed.letter) == ("Answer: C", "C")


@pytest.mark.parametrize(("text", "reasoning"), [("", None), (" \n\t", None), ("\n", "  \n")])
def test_empty(text: str, reasoning: str | None) -> None:
    parsed = parse_completion(text, reasoning_content=reasoning, n_options=4)
    assert parsed.shape == "empty"
    assert not parsed.closed
    assert parsed.reasoning is parsed.answer_text is parsed.letter is None


def test_blank_reasoning_field_falls_back_to_the_text() -> None:
    parsed = parse_completion("chain</think>Answer: B", reasoning_content="", n_options=4)
    assert (parsed.shape, parsed.letter) == ("open_tag_omitted", "B")


def test_custom_markers() -> None:
    text = "<reasoning>x is B</reasoning>The answer is D. </think>"
    parsed = parse_completion(
        text, think_open="<reasoning>", think_close="</reasoning>", n_options=4
    )
    assert (parsed.shape, parsed.reasoning, parsed.letter) == ("tagged", "x is B", "D")


def test_accepts_a_teacher_result() -> None:
    result = TeacherResult(
        text="The answer is A.", reasoning_content="chain", finish_reason="stop", latency_s=1.0,
        model="m",
    )  # fmt: skip
    parsed = parse_completion(result, n_options=4)
    assert (parsed.shape, parsed.letter) == ("separate_field", "A")
    with pytest.raises(ValueError, match="reasoning_content"):
        parse_completion(result, reasoning_content="x", n_options=4)


# --- properties ---------------------------------------------------------------------------------

DECOYS = ["The answer is B", "\\boxed{C}", "Answer: A", "\\boxed{", "}", "<think>", "</thin", "\n"]
ANSWER_LINES = [
    "The answer is \\boxed{{{L}}}.",
    "The answer is {L}.",
    "the answer is ({L})",
    "**Answer:** {L}",
    "Final answer: {L}",
    "\\boxed{{\\text{{{L}}}}}",
    "$\\boxed{{{L}}}$",
]
reasoning_texts = st.lists(st.one_of(st.text(), st.sampled_from(DECOYS))).map("".join)


@given(
    reasoning=reasoning_texts,
    n_options=st.integers(min_value=2, max_value=10),
    data=st.data(),
    line=st.sampled_from(ANSWER_LINES),
    prefix=st.sampled_from(["", "So, ", "Having checked every option, "]),
    open_tag=st.booleans(),
)
def test_letter_comes_from_the_answer_line_whatever_the_reasoning(
    reasoning: str, n_options: int, data: st.DataObject, line: str, prefix: str, open_tag: bool
) -> None:
    assume("</think>" not in reasoning)
    letter = data.draw(st.sampled_from(LETTERS[:n_options]))
    text = ("<think>\n" if open_tag else "") + reasoning + "\n</think>\n\n"
    text += prefix + line.format(L=letter) + "\n"
    parsed = parse_completion(text, n_options=n_options)
    assert parsed.closed
    assert parsed.letter == letter


@given(text=st.text(), n_options=st.integers(min_value=1, max_value=10))
def test_no_close_marker_means_not_closed(text: str, n_options: int) -> None:
    assume("</think>" not in text)
    parsed = parse_completion(text, n_options=n_options)
    assert not parsed.closed
    assert parsed.letter is None
    assert parsed.answer_text is None


tricky_text = st.lists(
    st.sampled_from([*"AB{}()\\ :*$.\n", "boxed", "answer is", "text", "</think>"])
).map("".join)


@given(
    text=st.one_of(st.text(), tricky_text),
    reasoning=st.one_of(st.none(), st.text(), tricky_text),
    n_options=st.integers(min_value=1, max_value=10),
)
def test_parse_never_raises(text: str, reasoning: str | None, n_options: int) -> None:
    parsed = parse_completion(text, reasoning_content=reasoning, n_options=n_options)
    if parsed.letter is not None:
        assert parsed.letter in LETTERS[:n_options]
        assert parsed.answer_text is not None
        assert parsed.letter in parsed.answer_text.upper()
