"""Option order and letters: presented option i is the question's original choice order[i].

Every place that turns a job's `choice_order` into letters or back goes through here, so the
mapping is written once."""

from __future__ import annotations

from collections.abc import Sequence

LETTERS = "ABCDEFGHIJ"


def letter_at(position: int) -> str:
    return LETTERS[position]


def position_of(order: Sequence[int], answer_index: int) -> int:
    """The position at which original choice `answer_index` is presented.

    Raises ValueError when `answer_index` is not in `order`."""
    return list(order).index(answer_index)


def gold_letter(order: Sequence[int], answer_index: int) -> str:
    """The letter under which original choice `answer_index` is presented.

    Raises ValueError when `answer_index` is not in `order`."""
    try:
        return LETTERS[position_of(order, answer_index)]
    except ValueError:
        raise ValueError(
            f"choice {answer_index} is not among the presented options {order}"
        ) from None


def original_index(letter: str, order: Sequence[int]) -> int:
    """The original choice index of a presented letter.

    Raises ValueError for a letter outside the presented options."""
    position = LETTERS.find(letter.upper()) if len(letter) == 1 else -1
    if not 0 <= position < len(order):
        raise ValueError(f"letter {letter!r} is not one of {len(order)} presented options")
    return int(order[position])


def presented(choices: Sequence[str], order: Sequence[int]) -> list[str]:
    """The options in the order they are shown."""
    return [choices[i] for i in order]


def is_permutation(order: Sequence[int], n_options: int) -> bool:
    return sorted(order) == list(range(n_options))
