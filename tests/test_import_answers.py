"""Reading a gold answer: letters, indices, option text and ARC-style labels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distill.choices import LETTERS
from distill.importers.answers import AnswerError, resolve_answer
from schemas.mcq import normalise_text

OPTIONS = ["Paris", "London", "Berlin", "Madrid"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("B", 1),
        ("b", 1),
        ("(B)", 1),
        ("(c)", 2),
        ("D.", 3),
        (" A ", 0),
        (2, 2),
        (0, 0),
        ("2", 2),
        (3.0, 3),
        ("Berlin", 2),
        ("  berlin ", 2),
        ("MADRID", 3),
    ],
)
def test_answer_forms(value: object, expected: int) -> None:
    assert resolve_answer(value, OPTIONS) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("E", "'E' is not one of the 4 options"),
        ("(J)", "'(J)' is not one of the 4 options"),
        (4, "index 4 is out of range for 4 options (indices are 0-based)"),
        ("7", "index 7 is out of range for 4 options"),
        (-1, "index -1 is out of range for 4 options"),
        ("Rome", "'Rome' is not one of the 4 options"),
        (None, "missing"),
        (float("nan"), "missing"),
        ("   ", "empty"),
        (True, "True is not a letter, an index or an option"),
        ([1], "expected a letter, an index or option text, got list"),
    ],
)
def test_bad_answers(value: object, message: str) -> None:
    with pytest.raises(AnswerError) as info:
        resolve_answer(value, OPTIONS)
    assert str(info.value) == message


def test_labels_win_over_indices() -> None:
    # ARC: answerKey "1" is the option labelled "1" (the first), not 0-based index 1.
    labels = ["1", "2", "3", "4"]
    assert resolve_answer("1", OPTIONS, labels=labels) == 0
    assert resolve_answer("4", OPTIONS, labels=labels) == 3
    assert resolve_answer("c", OPTIONS, labels=["A", "B", "C", "D"]) == 2


def test_digits_are_indices_unless_text_is_asked_for() -> None:
    numeric = ["1", "2", "3", "4"]
    assert resolve_answer("2", numeric) == 2
    assert resolve_answer("2", numeric, fmt="text") == 1
    assert resolve_answer("B", ["A", "B"], fmt="text") == 1


@pytest.mark.parametrize(
    ("fmt", "value", "message"),
    [
        ("letter", "2", "'2' is not a letter A-J"),
        ("letter", 2, "2 is not a letter A-J"),
        ("index", "B", "'B' is not a 0-based index"),
        ("text", 1, "1 is not option text"),
    ],
)
def test_forced_formats_refuse_other_forms(fmt: str, value: object, message: str) -> None:
    with pytest.raises(AnswerError, match=message):
        resolve_answer(value, OPTIONS, fmt=fmt)  # type: ignore[arg-type]


option_text = st.text(min_size=1, max_size=30).filter(lambda s: s.strip())
options_lists = st.lists(
    option_text, min_size=2, max_size=10, unique_by=lambda s: normalise_text(s).casefold()
)


@given(options_lists, st.data())
def test_every_form_of_an_answer_names_the_same_option(
    options: list[str], data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(options) - 1))
    letter = LETTERS[i]
    for form in (letter, letter.lower(), f"({letter})", i, str(i)):
        assert resolve_answer(form, options) == i
    assert resolve_answer(options[i], options, fmt="text") == i


@given(st.integers(2, 9), st.data())
def test_letters_past_the_last_option_are_refused(n: int, data: st.DataObject) -> None:
    options = [f"option {k}" for k in range(n)]
    beyond = data.draw(st.sampled_from(LETTERS[n:]))
    with pytest.raises(AnswerError, match=f"is not one of the {n} options"):
        resolve_answer(beyond, options)


GENOTYPES = ["BB Bb", "Bb Bb", "bb Bb", "bB bb"]


def test_answer_text_matches_exactly_before_ignoring_case() -> None:
    # Options that differ only in letter case are different options.
    assert resolve_answer("Bb Bb", GENOTYPES, fmt="text") == 1
    assert resolve_answer("bb Bb", GENOTYPES, fmt="text") == 2
    assert resolve_answer("bB  bb", GENOTYPES, fmt="text") == 3  # whitespace is normalised
    assert resolve_answer("BB BB", ["BB BB", "Cc"], fmt="text") == 0


def test_answer_text_ignoring_case_only_when_one_option_matches() -> None:
    assert resolve_answer("BB bb", ["BB BB", "Cc"], fmt="text") == 0  # unambiguous
    with pytest.raises(AnswerError, match="matches options A and C when letter case is ignored"):
        resolve_answer("BB bb", ["BB Bb", "Cc", "bb Bb", "Dd"], fmt="text")
    with pytest.raises(AnswerError, match="options A, B, C and D when"):
        resolve_answer("BB bB", GENOTYPES, fmt="text")


@pytest.mark.parametrize(
    "choices",
    [GENOTYPES, ["II", "ii", "iii"], ["Sc ≡ Ej", "sC ≡ eJ", "Cse", "cSE"]],
)
def test_options_differing_in_case_are_a_valid_question(choices: list[str]) -> None:
    from schemas.mcq import MCQRecord

    record = MCQRecord(question="Which?", choices=choices, answer_index=1)
    assert record.choices == choices
