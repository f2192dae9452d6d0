"""A question's options: letters and option order, options that refer to other options, and
the orders that keep their meaning."""

from distill.choices.letters import (
    LETTERS,
    gold_letter,
    is_permutation,
    original_index,
    position_of,
    presented,
)
from distill.choices.order import OptionOrder, OrderRule, balanced_orders
from distill.choices.references import RefKind, detect

__all__ = [
    "LETTERS",
    "OptionOrder",
    "OrderRule",
    "RefKind",
    "balanced_orders",
    "detect",
    "gold_letter",
    "is_permutation",
    "original_index",
    "position_of",
    "presented",
]
