"""Which option orders keep a question's meaning, and orders that balance gold letters.

The rule, per question (from `references.detect`, stored at import):

- `free`: any permutation.
- `anchored`: every list reference ("All of the above", "None of these") keeps its original
  position, and the other options move only within the stretch between two such anchors, so an
  option above "All of the above" stays above it. The usual case, one anchor in last place,
  leaves every other option free.
- `fixed`: the original order. An option that names others by letter ("Both A and B") means
  what it means only in the order it was written in.

A run stays letter-balanced through the questions that can move: the most constrained jobs take
their positions first, and every other job takes the least used position it is allowed."""

from __future__ import annotations

import enum
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from distill.choices.references import RefKind


class OptionOrder(enum.StrEnum):
    free = "free"
    anchored = "anchored"
    fixed = "fixed"


@dataclass(frozen=True, slots=True)
class OrderRule:
    n_options: int
    kind: OptionOrder = OptionOrder.free
    anchors: tuple[int, ...] = ()  # original indices (= positions) that never move

    @classmethod
    def of(cls, n_options: int, refs: Sequence[str | None] | None) -> OrderRule:
        """The rule for a question whose options refer as `refs` says (None: no references)."""
        kinds = [RefKind(r) if r else None for r in (refs or ())]
        if RefKind.letters in kinds:
            return cls(n_options, OptionOrder.fixed)
        anchors = tuple(i for i, kind in enumerate(kinds) if kind is RefKind.above)
        if anchors:
            return cls(n_options, OptionOrder.anchored, anchors)
        return cls(n_options)

    @classmethod
    def unshuffled(cls, n_options: int) -> OrderRule:
        return cls(n_options, OptionOrder.fixed)

    def _segment(self, position: int) -> tuple[int, int]:
        """[start, end) of the positions an option at `position` may move among."""
        if self.kind is OptionOrder.fixed or position in self.anchors:
            return position, position + 1
        if self.kind is OptionOrder.free:
            return 0, self.n_options
        start = max((a + 1 for a in self.anchors if a < position), default=0)
        end = min((a for a in self.anchors if a > position), default=self.n_options)
        return start, end

    def gold_positions(self, answer_index: int) -> range:
        """Where the gold option may be presented."""
        return range(*self._segment(answer_index))

    def allows(self, order: Sequence[int]) -> bool:
        """True when `order` (presented i = original order[i]) keeps every option's meaning."""
        if sorted(order) != list(range(self.n_options)):
            return False
        return all(self._segment(original) == self._segment(p) for p, original in enumerate(order))

    def permutation(self, answer_index: int, target: int, rng: random.Random) -> list[int]:
        """An allowed order with the gold option at `target` (which gold_positions must hold);
        the other options shuffled within their stretches."""
        if target not in self.gold_positions(answer_index):
            raise ValueError(f"the gold option cannot be presented at position {target}")
        order = list(range(self.n_options))
        start = 0
        while start < self.n_options:
            end = self._segment(start)[1]
            members = [i for i in range(start, end) if i != answer_index]
            rng.shuffle(members)
            if start <= answer_index < end:
                members.insert(target - start, answer_index)
            order[start:end] = members
            start = end
        return order

    def move_gold(self, order: Sequence[int], answer_index: int, target: int) -> tuple[int, ...]:
        """`order` with the gold option swapped into `target`: the option there takes the gold
        option's place, every other option stays, so the prompt changes as little as it can."""
        if target not in self.gold_positions(answer_index):
            raise ValueError(f"the gold option cannot be presented at position {target}")
        new = list(order)
        here = new.index(answer_index)
        new[here], new[target] = new[target], new[here]
        return tuple(new)


def balanced_orders(jobs: Sequence[tuple[OrderRule, int]], *, seed: int) -> list[list[int]]:
    """An option order per (rule, answer index), so that per option count the gold answer lands
    on each position as evenly as the rules allow (exactly, to within one, when enough questions
    can move). Deterministic for a seed."""
    rng = random.Random(seed)
    targets = [0] * len(jobs)
    by_count: dict[int, list[int]] = defaultdict(list)
    for j, (rule, _) in enumerate(jobs):
        by_count[rule.n_options].append(j)
    for n_options in sorted(by_count):
        members = by_count[n_options]
        allowed = {j: jobs[j][0].gold_positions(jobs[j][1]) for j in members}
        tiebreak = {j: rng.random() for j in members}
        tally = [0] * n_options
        for j in sorted(members, key=lambda j: (len(allowed[j]), tiebreak[j])):
            best = min(allowed[j], key=lambda p: (tally[p], rng.random()))
            tally[best] += 1
            targets[j] = best
    return [rule.permutation(answer, targets[j], rng) for j, (rule, answer) in enumerate(jobs)]
