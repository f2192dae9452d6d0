from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from distill.choices import LETTERS, OrderRule, balanced_orders
from distill.db import session_scope
from distill.errors import UserError
from distill.jobs.enqueue import pick_questions
from distill.models import Job, JobStatus, Question
from tests.support.factories import add_questions, enqueue


def test_creates_n_times_k_queued_jobs(engine: Engine) -> None:
    add_questions(engine, 30)
    plan = enqueue(engine, 10, samples=3)
    assert plan.questions == 10
    assert len(plan.job_ids) == 30
    with session_scope(engine) as s:
        jobs = s.scalars(select(Job)).all()
        assert {j.status for j in jobs} == {JobStatus.queued}
        per_question = Counter(j.question_id for j in jobs)
        assert set(per_question.values()) == {3}
        assert {j.sample_index for j in jobs} == {0, 1, 2}
        assert {j.max_tokens for j in jobs} == {256}


def test_rerun_never_duplicates_and_reports_what_is_left(engine: Engine) -> None:
    add_questions(engine, 12)
    first = enqueue(engine, 10)
    second = enqueue(engine, 10)
    assert second.questions == 2 and second.available == 2 and second.requested == 10
    with session_scope(engine) as s:
        assert s.scalar(select(func.count(func.distinct(Job.question_id)))) == 12
        assert s.scalar(select(func.count(Job.id))) == 12
    assert not set(first.job_ids) & set(second.job_ids)
    with pytest.raises(UserError, match="already has jobs"):
        enqueue(engine, 1)


def test_empty_database_and_unknown_subject_are_user_errors(engine: Engine) -> None:
    with pytest.raises(UserError, match="distill import"):
        enqueue(engine, 5)
    add_questions(engine, 3)
    from distill.jobs.enqueue import create_run

    with session_scope(engine) as s, pytest.raises(UserError, match="unknown subject"):
        create_run(s, n=1, samples=1, teacher_model="t", params={}, max_tokens=8, subjects=["nope"])


def test_selection_spreads_subjects_and_is_seeded(engine: Engine) -> None:
    add_questions(engine, 90, subjects=("a", "b", "c"))
    plan = enqueue(engine, 9, seed=7)
    with session_scope(engine) as s:
        subjects = Counter(
            s.scalars(select(Question.subject).join(Job, Job.question_id == Question.id))
        )
    assert subjects == {"a": 3, "b": 3, "c": 3}
    candidates = [(i, "abc"[i % 3]) for i in range(90)]
    assert pick_questions(candidates, n=9, seed=7) == pick_questions(candidates, n=9, seed=7)
    assert pick_questions(candidates, n=9, seed=7) != pick_questions(candidates, n=9, seed=8)
    assert plan.questions == 9


def test_gold_letters_balanced_within_two_percent(engine: Engine) -> None:
    # Every stored answer is "A" in the original order: the skew enqueue must undo.
    add_questions(engine, 1200)
    with session_scope(engine) as s:
        s.execute(Question.__table__.update().values(answer_index=0))
    enqueue(engine, 1200)
    with session_scope(engine) as s:
        rows = s.execute(select(Job.choice_order, Question.answer_index).join(Question)).all()
    letters = Counter(LETTERS[order.index(answer)] for order, answer in rows)
    assert set(letters) == set("ABCD")
    for letter in "ABCD":
        assert abs(letters[letter] / len(rows) - 0.25) <= 0.02, letters


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(2, 10), st.integers(0, 9)), min_size=1, max_size=60),
    st.integers(0, 99),
)
def test_permutation_is_a_permutation_and_balanced(
    shapes: list[tuple[int, int]], seed: int
) -> None:
    jobs = [(OrderRule(n), answer % n) for n, answer in shapes]
    positions: dict[int, Counter[int]] = {}
    for (rule, answer), order in zip(jobs, balanced_orders(jobs, seed=seed), strict=True):
        n = rule.n_options
        assert sorted(order) == list(range(n))
        positions.setdefault(n, Counter())[order.index(answer)] += 1
    for n, counts in positions.items():
        # Exact up to one incomplete block of n positions.
        full = [counts[p] for p in range(n)]
        assert max(full) - min(full) <= 1


def test_more_samples_top_up_questions_already_asked(engine: Engine) -> None:
    add_questions(engine, 30)
    first = enqueue(engine, 10, samples=1)
    with session_scope(engine) as s:
        asked = set(s.scalars(select(Job.question_id).where(Job.id.in_(first.job_ids))))
    topped = enqueue(engine, 10, samples=3)
    # The questions already asked come first and get only the samples they lack.
    assert topped.questions == 10 and topped.topped_up == 10
    assert len(topped.job_ids) == 20
    with session_scope(engine) as s:
        new = s.execute(
            select(Job.question_id, Job.sample_index).where(Job.run_id == topped.run_id)
        )
        pairs = set(new.all())
    assert {q for q, _ in pairs} == asked
    assert {k for _, k in pairs} == {1, 2}
    # Idempotent: the same request again only finds the 20 questions never asked.
    again = enqueue(engine, 10, samples=3)
    assert again.topped_up == 0 and len(again.job_ids) == 30
    with session_scope(engine) as s:
        per_sample = Counter(s.execute(select(Job.question_id, Job.sample_index)).all())
    assert set(per_sample.values()) == {1}  # no (question, sample) asked twice


def test_top_up_mixes_in_new_questions_when_the_asked_ones_run_out(engine: Engine) -> None:
    add_questions(engine, 10)
    enqueue(engine, 3, samples=2)
    plan = enqueue(engine, 5, samples=4)
    assert plan.questions == 5 and plan.topped_up == 3
    assert len(plan.job_ids) == 3 * 2 + 2 * 4
    rest = enqueue(engine, 100, samples=1)
    assert rest.questions == 5 and rest.topped_up == 0
    with pytest.raises(UserError, match="already has jobs for 1 sample"):
        enqueue(engine, 100, samples=1)


def test_a_retry_with_a_bigger_budget_counts_as_the_same_sample(engine: Engine) -> None:
    add_questions(engine, 2)
    plan = enqueue(engine, 2, samples=1)
    with session_scope(engine) as s:
        job = s.get(Job, plan.job_ids[0])
        assert job is not None
        s.add(
            Job(
                run_id=job.run_id,
                question_id=job.question_id,
                teacher_model=job.teacher_model,
                prompt_version=job.prompt_version,
                sample_index=0,
                max_tokens=4096,
                choice_order=job.choice_order,
                supersedes_id=job.id,
            )
        )
    topped = enqueue(engine, 2, samples=2)
    assert len(topped.job_ids) == 2  # sample 1 of each question; sample 0 exists twice
