"""Export decisions on plain rows (no database): splits, curriculum order, letter balance,
near-duplicates, decontamination and sample selection."""

from __future__ import annotations

import hashlib
import random
from collections import Counter

import pytest

from distill.errors import UserError
from distill.export.balance import (
    choose_balanced,
    rebalance_direct,
    subsample_balanced,
    with_gold_at,
)
from distill.export.curriculum import interleave_subjects, order_train, order_validation, score
from distill.export.dedupe import EvalIndex, near_duplicates, question_key
from distill.export.items import Difficulty, PlannedRecord
from distill.export.plan import newest_samples
from distill.export.select import QuestionRow, SampleRow, select_in_runs
from distill.export.splits import assign_splits, default_val_size
from distill.models import Outcome
from schemas.export import Curriculum, Split


def _question(i: int, *, subject: str = "math", answer: int = 0, options: int = 4) -> QuestionRow:
    uid = hashlib.sha256(f"q{i}".encode()).hexdigest()
    return QuestionRow(
        i, uid, subject, f"Question {i}?", tuple(f"o{j}" for j in range(options)), answer
    )


def _record(
    i: int,
    *,
    difficulty: float = 0.0,
    length: float = 0.0,
    subject: str = "math",
    order: tuple[int, ...] = (0, 1, 2, 3),
    split: Split = Split.train,
    answer: int = 0,
) -> PlannedRecord:
    q = _question(i, subject=subject, answer=answer, options=len(order))
    return PlannedRecord(
        record_id=f"{q.uid[:16]}-d",
        question=q,
        split=split,
        order=order,
        difficulty=Difficulty(difficulty, length, 4, 0),
    )


def _sample(
    gid: int,
    *,
    qid: int = 1,
    job: int | None = None,
    sample_index: int = 0,
    run: int = 1,
    supersedes: int | None = None,
    outcome: Outcome = Outcome.correct,
    tokens: int | None = 100,
) -> SampleRow:
    return SampleRow(
        generation_id=gid,
        job_id=job or gid,
        question_id=qid,
        run_id=run,
        supersedes_id=supersedes,
        teacher_model="t",
        prompt_version="v",
        sample_index=sample_index,
        choice_order=(0, 1, 2, 3),
        outcome=outcome,
        finish_reason="stop",
        completion_tokens=tokens,
        predicted_letter="A",
        closed=True,
    )


# --- splits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, 0), (1, 0), (2, 1), (9, 1), (100, 10), (4999, 500), (5000, 500), (80_000, 500)],
)
def test_default_validation_size(n: int, expected: int) -> None:
    assert default_val_size(n) == expected


def test_splits_are_stratified_deterministic_and_seeded() -> None:
    pool = [
        (hashlib.sha256(f"{i}".encode()).hexdigest(), "big" if i % 4 else "small")
        for i in range(2000)
    ]
    splits = assign_splits(pool, val_size=None, seed=7)
    assert set(splits) == {uid for uid, _ in pool}
    val = [uid for uid, s in splits.items() if s is Split.validation]
    assert len(val) == 200
    by_subject = Counter(subject for uid, subject in pool if splits[uid] is Split.validation)
    assert by_subject == {"big": 150, "small": 50}  # 3:1, as in the pool
    assert assign_splits(list(reversed(pool)), val_size=None, seed=7) == splits  # order-free
    assert assign_splits(pool, val_size=None, seed=8) != splits


def test_split_of_a_question_does_not_move_when_others_join() -> None:
    pool = [(f"{i:04d}", "s") for i in range(1000)]
    first = assign_splits(pool, val_size=100, seed=0)
    grown = assign_splits([*pool, *((f"x{i}", "s") for i in range(10))], val_size=100, seed=0)
    moved = sum(1 for uid in first if first[uid] is not grown[uid])
    newcomers_in_validation = sum(1 for i in range(10) if grown[f"x{i}"] is Split.validation)
    assert moved == newcomers_in_validation  # each newcomer displaces at most one question


def test_validation_cannot_take_every_question() -> None:
    with pytest.raises(UserError, match="leaves no training questions"):
        assign_splits([("a", "s"), ("b", "s")], val_size=2, seed=0)


# --- curriculum -----------------------------------------------------------------------------


def test_difficulty_is_one_minus_pass_rate_with_length_tiebreak() -> None:
    samples = [
        _sample(1, outcome=Outcome.correct, tokens=100),
        _sample(2, outcome=Outcome.correct, tokens=300),
        _sample(3, outcome=Outcome.truncated, tokens=8000),
        _sample(4, outcome=Outcome.incorrect, tokens=50),
    ]
    d = score(samples)
    assert d.value == 0.5 and d.length == 200.0 and (d.samples, d.correct) == (4, 2)
    never = score([_sample(5, outcome=Outcome.truncated, tokens=8000)])
    assert never.value == 1.0 and never.length == 8000.0


def test_easy_to_hard_is_monotone_and_breaks_ties_by_length() -> None:
    rng = random.Random(0)
    records = [
        _record(i, difficulty=rng.choice([0, 0.25, 0.5, 1.0]), length=rng.randint(1, 9))
        for i in range(300)
    ]
    ordered = order_train(records, mode=Curriculum.easy_to_hard, seed=0, stages=None)
    keys = [(r.difficulty.value, r.difficulty.length) for r in ordered]
    assert keys == sorted(keys)
    assert [r.curriculum_rank for r in ordered] == list(range(300))
    hard_first = order_train(records, mode=Curriculum.hard_to_easy, seed=0, stages=None)
    assert [r.difficulty.value for r in hard_first] == sorted(
        (r.difficulty.value for r in records), reverse=True
    )


def test_no_curriculum_is_a_seeded_shuffle() -> None:
    records = [_record(i, difficulty=i / 100) for i in range(100)]
    a = [r.record_id for r in order_train(records, mode=Curriculum.none, seed=1, stages=None)]
    b = [r.record_id for r in order_train(records, mode=Curriculum.none, seed=1, stages=None)]
    c = [r.record_id for r in order_train(records, mode=Curriculum.none, seed=2, stages=None)]
    assert a == b and a != c and a != [r.record_id for r in records]


def test_stages_are_difficulty_quantiles_with_subjects_interleaved() -> None:
    rng = random.Random(1)
    records = [
        _record(i, difficulty=rng.random(), subject="bio" if i % 3 == 0 else "math")
        for i in range(300)
    ]
    ordered = order_train(records, mode=Curriculum.easy_to_hard, seed=0, stages=3)
    stages = [r.stage if r.stage is not None else -1 for r in ordered]
    assert stages == sorted(stages) and set(stages) == {0, 1, 2}
    for s in range(2):
        this = [r.difficulty.value for r in ordered if r.stage == s]
        following = [r.difficulty.value for r in ordered if r.stage == s + 1]
        assert max(this) <= min(following)
        assert len(this) == 100
    first_stage = [r.question.subject for r in ordered if r.stage == 0]
    # About a third is bio, spread over the whole stage rather than bunched at one end.
    assert "math,math,math,math" not in ",".join(first_stage)
    halves = first_stage[:50], first_stage[50:]
    assert abs(halves[0].count("bio") - halves[1].count("bio")) <= 2


def test_interleave_keeps_each_subject_in_order() -> None:
    records = [_record(i, subject="a" if i < 6 else "b") for i in range(9)]
    mixed = interleave_subjects(records)
    assert [r.question.id for r in mixed if r.question.subject == "a"] == list(range(6))
    assert [r.question.subject for r in mixed] == ["a", "b", "a", "a", "b", "a", "a", "b", "a"]


def test_validation_is_sorted_by_uid() -> None:
    records = [_record(i, split=Split.validation, difficulty=i / 10) for i in range(10)]
    assert [r.question.uid for r in order_validation(records)] == sorted(
        r.question.uid for r in records
    )


# --- balance --------------------------------------------------------------------------------


def _share_ok(records: list[PlannedRecord], k: int, tolerance: float = 0.02) -> bool:
    counts = Counter(r.letter for r in records)
    return all(abs(counts[x] / len(records) - 1 / k) <= tolerance for x in "ABCDEFGHIJ"[:k])


def test_direct_rebalance_reaches_uniform_letters_per_split() -> None:
    rng = random.Random(3)
    records = []
    for i in range(1200):
        order = [0, 1, 2, 3]
        if rng.random() < 0.2:
            rng.shuffle(order)  # 80 % of the gold letters are A before balancing
        records.append(
            _record(i, order=tuple(order), split=Split.validation if i % 10 == 0 else Split.train)
        )
    moved = rebalance_direct(records, seed=0)
    for split in Split:
        part = [r for r in records if r.split is split]
        counts = Counter(r.letter for r in part)
        assert max(counts.values()) - min(counts.values()) <= 1
        assert _share_ok(part, 4)
    assert all(sorted(r.order) == [0, 1, 2, 3] for r in records)
    assert moved < 1200 * 0.8  # only the surplus moves


def test_mixed_option_counts_are_balanced_within_each_count() -> None:
    records = [_record(i, order=tuple(range(4))) for i in range(400)]
    records += [_record(1000 + i, order=tuple(range(5))) for i in range(500)]
    rebalance_direct(records, seed=0)
    assert Counter(r.letter for r in records if r.n_options == 4) == dict.fromkeys("ABCD", 100)
    assert Counter(r.letter for r in records if r.n_options == 5) == dict.fromkeys("ABCDE", 100)


def test_with_gold_at_swaps_only_two_options() -> None:
    assert with_gold_at((3, 1, 0, 2), gold=0, position=0) == (0, 1, 3, 2)


def test_choose_balanced_prefers_rare_letters_then_short_chains() -> None:
    candidates = []
    for i in range(400):
        # Each question: a short chain with gold A, a longer one with gold at position i % 4.
        short = _record(i, order=(0, 1, 2, 3))
        other = _record(i, order=with_gold_at((0, 1, 2, 3), 0, i % 4))
        candidates.append([short, other])
    chosen = choose_balanced(candidates, seed=0)
    assert len(chosen) == 400
    counts = Counter(r.letter for r in chosen)
    assert counts["A"] <= 130  # without balance: 100 % A


def test_subsample_balanced_cuts_every_letter_to_the_rarest() -> None:
    records = [
        _record(i, order=with_gold_at((0, 1, 2, 3), 0, p))
        for i, p in enumerate([0] * 50 + [1] * 20 + [2] * 30 + [3] * 25)
    ]
    kept, dropped = subsample_balanced(records, seed=0)
    assert Counter(r.letter for r in kept) == dict.fromkeys("ABCD", 20)
    assert dropped == len(records) - 80


# --- hygiene --------------------------------------------------------------------------------


def test_near_duplicates_keep_the_lowest_id() -> None:
    questions = [
        (5, "What is the capital of France?", ["Paris", "Lyon"]),
        (3, "what is the  capital of france", ["lyon", "PARIS."]),
        (9, "What is the capital of France?", ["Paris", "Nice"]),  # other options: not a duplicate
        (7, "Which of the following is true?", ["a", "b"]),
        (8, "Which of the following is true?", ["c", "d"]),
    ]
    assert near_duplicates(questions) == {5}


def test_question_key_ignores_case_punctuation_spacing_and_option_order() -> None:
    assert question_key("Ｆire-truck?", ["x", "Y"]) == question_key("fire truck", ["y.", "x"])


def test_eval_index_matches_text_or_a_shared_13_gram() -> None:
    index = EvalIndex()
    long_stem = (
        "In a closed system the total energy remains constant over time because energy is conserved"
    )
    index.add(long_stem + ". Which law is this?", ["first law", "second law"])
    index.add("Short one?", ["a", "b"])
    assert index.contains("short ONE", ["B", "a"])  # same normalised question
    assert index.contains("Consider: " + long_stem + " indeed.", ["x", "y"])  # a 13-gram
    assert not index.contains("In a closed system the total energy changes", ["x", "y"])
    assert not index.contains("Short one?", ["a", "c"])


# --- sample selection -----------------------------------------------------------------------


def test_newest_finished_job_per_sample_wins() -> None:
    samples = [
        _sample(1, job=10, sample_index=0, outcome=Outcome.truncated),
        _sample(2, job=11, sample_index=1),
        _sample(3, job=20, sample_index=0, supersedes=10),  # the retry of job 10
    ]
    current, superseded = newest_samples(samples)
    assert [s.generation_id for s in current] == [2, 3] and superseded == 1


def test_run_selection_follows_retries_into_their_own_run() -> None:
    samples = [
        _sample(1, job=10, run=1, outcome=Outcome.truncated),
        _sample(2, job=20, run=9, supersedes=10),  # retry of a run-1 job
        _sample(3, job=30, run=2, qid=2),
        _sample(4, job=40, run=9, supersedes=30, qid=2),  # retry of a run-2 job
        _sample(5, job=50, run=9, supersedes=20),  # retry of the retry
    ]
    picked = select_in_runs(samples, runs=(1,))
    assert [s.generation_id for s in picked] == [1, 2, 5]
    assert select_in_runs(samples, runs=()) == samples
