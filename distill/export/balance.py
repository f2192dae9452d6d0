"""Gold-letter balance. A student that sees "C" as the answer more often learns "C".

Direct records are balanced by re-permuting options (prompt and answer together), exactly where
every question may move; an option that refers to others is never moved off what it names
(distill.choices), so such questions take part only as far as their rule lets them. A
reasoning chain refers to its options by letter ("so B is wrong"), so permuting would make it lie;
reasoning records are balanced only by *choosing*: among a question's correct chains the one whose
gold letter is least represented so far (--per-question best), or by subsampling every letter down
to the rarest (--per-question all). Balance is always within a split and within an option count:
"D" is a quarter of 4-option answers but a fifth of 5-option ones."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from distill.choices import LETTERS, OrderRule, position_of
from distill.export.items import PlannedRecord
from distill.export.seeding import seeded_key
from schemas.export import Split


def letter_counts(letters: Iterable[str]) -> dict[str, int]:
    counts = Counter(letters)
    return {letter: counts[letter] for letter in sorted(counts)}


def _groups(records: Iterable[PlannedRecord]) -> dict[tuple[Split, int], list[PlannedRecord]]:
    groups: dict[tuple[Split, int], list[PlannedRecord]] = defaultdict(list)
    for record in records:
        groups[(record.split, record.n_options)].append(record)
    return groups


def with_gold_at(order: Sequence[int], gold: int, position: int) -> tuple[int, ...]:
    """The option order with the gold option swapped into `position`; the other options keep
    their places, so the prompt stays as close as possible to the one the teacher saw."""
    return OrderRule(len(order)).move_gold(order, gold, position)


def _allowed(record: PlannedRecord) -> range:
    return record.question.rule.gold_positions(record.question.answer_index)


def rebalance_direct(records: Sequence[PlannedRecord], *, seed: int) -> int:
    """Re-permute the fewest records needed for uniform gold letters (within one record per
    letter) in every split and option count, as far as each question's order rule allows
    (an option that refers to others never changes what it names). Returns how many records
    were re-permuted."""
    moved_total = 0
    for (_split, k), group in sorted(_groups(records).items()):
        counts = Counter(position_of(r.order, r.question.answer_index) for r in group)
        base, extra = divmod(len(group), k)
        # The letters already most common keep the spare +1s: fewer records move.
        by_count = sorted(range(k), key=lambda p: (-counts[p], p))
        target = {p: base + (1 if i < extra else 0) for i, p in enumerate(by_count)}
        movers: list[PlannedRecord] = []
        for position in range(k):
            holders = [
                r for r in group if position_of(r.order, r.question.answer_index) == position
            ]
            movable = sorted(
                (r for r in holders if len(_allowed(r)) > 1),
                key=lambda r: seeded_key(seed, r.record_id),
            )
            # Records whose question fixes the gold position stay; the movable ones fill up
            # to the target and the rest move.
            keep = max(0, target[position] - (len(holders) - len(movable)))
            movers.extend(movable[keep:])
        slots = [p for p in range(k) for _ in range(max(0, target[p] - counts[p]))]
        # The most constrained first, so that they find a slot they may take.
        movers.sort(key=lambda r: (len(_allowed(r)), seeded_key(seed, r.record_id)))
        for record in movers:
            allowed = _allowed(record)
            slot = next((p for p in slots if p in allowed), None)
            if slot is None:
                continue  # its question cannot present the gold option where one is missing
            slots.remove(slot)
            record.order = record.question.rule.move_gold(
                record.order, record.question.answer_index, slot
            )
            moved_total += 1
    return moved_total


def choose_balanced(
    candidates: Sequence[Sequence[PlannedRecord]], *, seed: int
) -> list[PlannedRecord]:
    """One record per question from its candidates (each list in order of preference, shortest
    chain first): the one whose gold letter is rarest so far in its split and option count."""
    chosen: list[PlannedRecord] = []
    tallies: dict[tuple[Split, int], Counter[str]] = defaultdict(Counter)
    ordered = sorted(candidates, key=lambda c: seeded_key(seed, c[0].question.uid))
    for options in ordered:
        tally = tallies[(options[0].split, options[0].n_options)]
        best = min(range(len(options)), key=lambda i: (tally[options[i].letter], i))
        tally[options[best].letter] += 1
        chosen.append(options[best])
    return chosen


def subsample_balanced(
    records: Sequence[PlannedRecord], *, seed: int
) -> tuple[list[PlannedRecord], int]:
    """Keep, per split and option count, as many records of each letter as the rarest letter has
    (a letter with no record empties the group). Returns (kept, dropped)."""
    kept: list[PlannedRecord] = []
    for (_split, k), group in sorted(_groups(records).items()):
        by_letter: dict[str, list[PlannedRecord]] = defaultdict(list)
        for record in group:
            by_letter[record.letter].append(record)
        floor = min(len(by_letter.get(letter, [])) for letter in LETTERS[:k])
        for letter in LETTERS[:k]:
            ranked = sorted(by_letter.get(letter, []), key=lambda r: seeded_key(seed, r.record_id))
            kept.extend(ranked[:floor])
    return kept, len(records) - len(kept)
