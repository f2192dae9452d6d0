"""Difficulty scores and the order of the training split.

Validation is never curriculum-ordered: it is sorted by question uid, so evaluating on a prefix of
it is not evaluating on the easiest questions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from statistics import fmean

from distill.export.items import Difficulty, PlannedRecord
from distill.export.seeding import seeded_key
from distill.export.select import SampleRow
from distill.models import Outcome
from schemas.export import Curriculum


def score(samples: Sequence[SampleRow]) -> Difficulty:
    """Difficulty of one question from its current finished samples. A truncated, unparseable or
    empty sample counts as not passed: the teacher did not produce a usable right answer."""
    correct = [s for s in samples if s.outcome is Outcome.correct]
    measured = correct or list(samples)
    tokens = [s.completion_tokens for s in measured if s.completion_tokens is not None]
    return Difficulty(
        value=(len(samples) - len(correct)) / len(samples),  # not 1 - c/n: 1/3, not 0.33..37
        length=fmean(tokens) if tokens else 0.0,
        samples=len(samples),
        correct=len(correct),
    )


def order_train(
    records: Sequence[PlannedRecord], *, mode: Curriculum, seed: int, stages: int | None
) -> list[PlannedRecord]:
    """Train records in curriculum order, with curriculum_rank (and stage) set."""
    if mode is Curriculum.none:
        ordered = sorted(records, key=lambda r: seeded_key(seed, r.record_id))
    else:
        sign = 1.0 if mode is Curriculum.easy_to_hard else -1.0
        ordered = sorted(
            records,
            key=lambda r: (
                sign * r.difficulty.value,
                sign * r.difficulty.length,
                r.question.uid,
                r.record_id,
            ),
        )
    if stages:
        ordered = _stages(ordered, stages)
    for rank, record in enumerate(ordered):
        record.curriculum_rank = rank
    return ordered


def _stages(ordered: list[PlannedRecord], stages: int) -> list[PlannedRecord]:
    """Cut the ordered records into `stages` equal runs (difficulty quantiles: every record of
    stage s is at most as hard as any of stage s+1) and interleave subjects inside each run."""
    n = len(ordered)
    by_stage: dict[int, list[PlannedRecord]] = defaultdict(list)
    for i, record in enumerate(ordered):
        record.stage = i * stages // n
        by_stage[record.stage].append(record)
    result: list[PlannedRecord] = []
    for stage in sorted(by_stage):
        result.extend(interleave_subjects(by_stage[stage]))
    return result


def interleave_subjects(records: Sequence[PlannedRecord]) -> list[PlannedRecord]:
    """Round-robin over subjects, weighted by their size: the j-th of m records of a subject goes
    to position (j + 1/2) / m, so a large subject is spread evenly instead of piling up at the end
    once the small ones run out. Each subject keeps its own (curriculum) order."""
    by_subject: dict[str, list[PlannedRecord]] = defaultdict(list)
    for record in records:
        by_subject[record.question.subject].append(record)
    keyed = [
        ((j + 0.5) / len(group), subject, j, record)
        for subject, group in by_subject.items()
        for j, record in enumerate(group)
    ]
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    return [k[3] for k in keyed]


def order_validation(records: Sequence[PlannedRecord]) -> list[PlannedRecord]:
    return sorted(records, key=lambda r: (r.question.uid, r.record_id))
