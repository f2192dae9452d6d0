"""Options that refer to other options: which are found, and which orders keep their meaning."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distill.choices import (
    LETTERS,
    OptionOrder,
    OrderRule,
    RefKind,
    balanced_orders,
    detect,
    gold_letter,
    original_index,
)
from distill.choices.references import combination_labels, is_list_reference, stem_labels

FOUR = "Which of the following is right?"


# --- letters and option order: presented option i is original choice order[i] -----------------


def test_original_index() -> None:
    order = [2, 0, 3, 1]
    assert [original_index(letter, order) for letter in "ABCD"] == order
    assert original_index("c", order) == 3
    for bad in ["E", "", "AB", "?"]:
        with pytest.raises(ValueError, match="presented options"):
            original_index(bad, order)


def test_gold_letter() -> None:
    assert gold_letter([2, 0, 3, 1], 3) == "C"
    with pytest.raises(ValueError, match="not among"):
        gold_letter([2, 0, 3, 1], 4)


@given(data=st.data(), n_options=st.integers(min_value=1, max_value=len(LETTERS)))
def test_letter_mapping_round_trips(data: st.DataObject, n_options: int) -> None:
    order = data.draw(st.permutations(range(n_options)))
    index = data.draw(st.sampled_from(order))
    assert original_index(gold_letter(order, index), order) == index
    assert gold_letter(order, index) in LETTERS[: len(order)]


# --- options that refer to other options --------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "labels"),
    [
        ("Both A and B", ["A", "B"]),
        ("both a and b", ["a", "b"]),
        ("BOTH A AND B", ["A", "B"]),
        ("A, B and C", ["A", "B", "C"]),
        ("A, B, and C", ["A", "B", "C"]),
        ("(a) and (c)", ["a", "c"]),
        ("B and C only", ["B", "C"]),
        ("Neither (a) nor (b)", ["a", "b"]),
        ("Neither A nor B", ["A", "B"]),
        ("A and B are correct", ["A", "B"]),
        ("Both A and B are true.", ["A", "B"]),
        ("Options A and C", ["A", "C"]),
        ("A only", ["A"]),
        ("Only (b)", ["b"]),
        ("a & b", ["a", "b"]),
        ("A and/or B", ["A", "B"]),
        ("A or B but not C", ["A", "B", "C"]),
        ("either A or B", ["A", "B"]),
        ("a) and c)", ["a", "c"]),
        ("I and II only", ["I", "II"]),
        ("1 and 3", ["1", "3"]),
    ],
)
def test_letter_combinations_are_recognised(option: str, labels: list[str]) -> None:
    assert combination_labels(option) == labels


@pytest.mark.parametrize(
    "option",
    [
        "A and B are mutually exclusive events",  # a probability answer about events A and B
        "A and B are",  # a cut-off sentence, not a qualifier
        "A",  # a bare letter is an answer ("which letter comes next?"), not a reference
        "AB",  # a blood group
        "A, B, AB and O",
        "Type A and type B",
        "x and y",
        "The answer is A",
        "P(A and B) = 0",
        "shunt capacitor",
        "",
    ],
)
def test_look_alikes_are_not_letter_combinations(option: str) -> None:
    assert combination_labels(option) is None


@pytest.mark.parametrize(
    "option",
    [
        "All of the above",
        "all of the above.",
        "None of the above",
        "None of these",
        "Both of the above",
        "Neither of them",
        "Either of these",
        "None",
        "Both",
        "All of the above are correct",
        "None of the above statements is true",
        "All the above",
        "NONE OF THE OPTIONS",
    ],
)
def test_list_references_are_recognised(option: str) -> None:
    assert is_list_reference(option)


@pytest.mark.parametrize(
    "option", ["One", "All mammals", "None at all times", "above the clouds", "neither here"]
)
def test_list_look_alikes(option: str) -> None:
    assert not is_list_reference(option)


def test_transmission_line_question_keeps_its_order() -> None:
    refs = detect(
        "Stability of a transmission line can be increased by",
        ["shunt reactor", "series capacitor", "both A and B", "shunt capacitor"],
    )
    assert refs == [None, None, RefKind.letters, None]
    assert OrderRule.of(4, refs).kind is OptionOrder.fixed


def test_statements_of_the_stem_do_not_pin_the_options() -> None:
    # "I and III" names the stem's statements: any option order keeps its meaning.
    stem = "Which are true?\nI. Every cyclic group is abelian.\nII. x\nIII. y"
    assert detect(stem, ["I only", "II only", "I and III", "I, II and III"]) is None
    inline = "Consider (a) cats and (b) dogs. Which are mammals?"
    assert detect(inline, ["(a) only", "(b) only", "(a) and (b)", "neither"]) == [
        None,
        None,
        None,
        RefKind.above,
    ]


def test_option_letters_are_not_the_stems_lower_case_labels() -> None:
    # The stem enumerates (a) and (b); "Both A and B" names the options A and B.
    stem = "Statements: (a) prices rise (b) output falls. Which follows?"
    refs = detect(stem, ["(a) only", "(b) only", "Both A and B", "Neither"])
    assert refs is not None and refs[2] is RefKind.letters


def test_a_sentence_ending_in_a_letter_enumerates_nothing() -> None:
    assert stem_labels("A lack of vitamin A. Or of vitamin B. Which is worse?") == set()
    assert stem_labels("Consider:\nA. one\nB. two") == {"A", "B"}


def test_labels_beyond_the_options_name_no_option() -> None:
    assert detect(FOUR, ["E and F", "G", "H", "I"]) is None


def test_probability_look_alike_keeps_shuffling() -> None:
    refs = detect(
        "Let A and B be events with P(A and B) = 0. Which of the following is true?",
        ["A and B are mutually exclusive events", "A and B are independent", "P(A) = 0", "P(B)"],
    )
    assert refs is None


def test_list_references_pin_only_themselves() -> None:
    refs = detect(FOUR, ["solar", "wind", "All of the above", "None of the above"])
    rule = OrderRule.of(4, refs)
    assert rule.kind is OptionOrder.anchored and rule.anchors == (2, 3)
    assert list(rule.gold_positions(0)) == [0, 1]
    assert list(rule.gold_positions(3)) == [3]


def test_an_anchor_in_the_middle_keeps_what_is_above_it_above() -> None:
    rule = OrderRule.of(5, [None, None, "above", None, None])
    rng = random.Random(0)
    for _ in range(50):
        order = rule.permutation(4, rng.choice(list(rule.gold_positions(4))), rng)
        assert order[2] == 2
        assert set(order[:2]) == {0, 1} and set(order[3:]) == {3, 4}
        assert rule.allows(order)
    assert not rule.allows([3, 1, 2, 0, 4])  # option D moved above "None of these"


def test_fixed_rule_allows_only_the_original_order() -> None:
    rule = OrderRule.of(4, [None, None, "letters", None])
    assert rule.allows([0, 1, 2, 3]) and not rule.allows([1, 0, 2, 3])
    assert list(rule.gold_positions(1)) == [1]
    with pytest.raises(ValueError, match="cannot be presented"):
        rule.permutation(1, 0, random.Random(0))


rules = st.integers(2, 10).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.sampled_from([None, None, None, "above", "letters"]), min_size=n, max_size=n),
        st.integers(0, n - 1),
    )
)


@settings(max_examples=300, deadline=None)
@given(st.lists(rules, min_size=1, max_size=40), st.integers(0, 50))
def test_balanced_orders_keep_every_rule(
    jobs: list[tuple[int, list[str | None], int]], seed: int
) -> None:
    pairs = [(OrderRule.of(n, refs), answer) for n, refs, answer in jobs]
    for (rule, answer), order in zip(pairs, balanced_orders(pairs, seed=seed), strict=True):
        assert rule.allows(order)
        assert order.index(answer) in rule.gold_positions(answer)


def test_balance_within_two_points_through_the_questions_that_can_move() -> None:
    # 1,200 jobs whose stored answers are all A; 5 % keep their order (gold stays at A), 5 %
    # have "All of the above" as their gold answer in last place (gold stays at D).
    rng = random.Random(1)
    pairs = []
    for i in range(1200):
        if i % 20 == 0:
            pairs.append((OrderRule.of(4, [None, None, "letters", None]), 0))
        elif i % 20 == 1:
            pairs.append((OrderRule.of(4, [None, None, None, "above"]), 3))
        else:
            pairs.append((OrderRule(4), rng.choice([0, 0, 0, 1])))
    orders = balanced_orders(pairs, seed=3)
    letters = Counter(LETTERS[o.index(a)] for (_, a), o in zip(pairs, orders, strict=True))
    for letter in "ABCD":
        assert abs(letters[letter] / 1200 - 0.25) <= 0.02, letters
    assert max(letters.values()) - min(letters.values()) <= 1


def test_balanced_orders_are_seeded() -> None:
    pairs = [(OrderRule(4), i % 4) for i in range(40)]
    assert balanced_orders(pairs, seed=1) == balanced_orders(pairs, seed=1)
    assert balanced_orders(pairs, seed=1) != balanced_orders(pairs, seed=2)
