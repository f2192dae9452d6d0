"""Choosing questions for a run and creating its jobs.

Selection is deterministic for a seed: questions lacking samples for this teacher and prompt are
shuffled within each subject, and subjects take turns, so a small run still covers every subject.
Each job gets an option order that keeps every option's meaning (distill.choices: options that
refer to other options stay where they must) and that balances gold letters over the run."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from distill.choices import OrderRule, balanced_orders
from distill.errors import UserError
from distill.models import Job, Question, Run
from distill.prompts import PROMPT_VERSION, build_messages


@dataclass(frozen=True)
class RunSelection:
    """What a run will ask, before anything is written: `select_run` makes it, `insert_run`
    stores it (in between, the CLI checks the budget against the teacher)."""

    teacher_model: str
    prompt_version: str
    params: dict[str, object]  # as stored in the run: sampling, max_tokens, shuffle
    samples: int
    requested: int
    seed: int
    max_tokens: int
    jobs: list[tuple[int, int, list[int]]]  # (question id, sample index, option order)
    questions: int
    available: int  # questions that lacked samples
    topped_up: int  # of `questions`, those that already had some samples
    # The run's longest prompt (by characters), to check against the teacher's context.
    longest_prompt: list[dict[str, str]]


@dataclass(frozen=True)
class EnqueuePlan:
    run_id: int
    job_ids: list[int]
    questions: int
    available: int  # questions that lacked samples
    requested: int
    topped_up: int = 0  # of `questions`, those that already had some samples


def pick_questions(candidates: Sequence[tuple[int, str]], *, n: int, seed: int) -> list[int]:
    """Round-robin over subjects (in a seeded order), each subject's questions seeded-shuffled."""
    by_subject: dict[str, list[int]] = defaultdict(list)
    for qid, subject in sorted(candidates):
        by_subject[subject].append(qid)
    rng = random.Random(seed)
    subjects = sorted(by_subject)
    rng.shuffle(subjects)
    for subject in subjects:
        rng.shuffle(by_subject[subject])
    picked: list[int] = []
    cursors = dict.fromkeys(subjects, 0)
    while len(picked) < n and subjects:
        for subject in list(subjects):
            if len(picked) == n:
                break
            pool, i = by_subject[subject], cursors[subject]
            if i >= len(pool):
                subjects.remove(subject)
                continue
            picked.append(pool[i])
            cursors[subject] = i + 1
    return picked


def create_run(
    session: Session,
    *,
    n: int,
    samples: int,
    teacher_model: str,
    params: dict[str, object],
    max_tokens: int,
    subjects: Sequence[str] = (),
    seed: int = 0,
    prompt_version: str = PROMPT_VERSION,
    shuffle: bool = True,
) -> EnqueuePlan:
    """Create a run with the missing samples of n questions, as queued jobs (select_run, then
    insert_run). The caller commits, then publishes the ids."""
    selection = select_run(
        session,
        n=n,
        samples=samples,
        teacher_model=teacher_model,
        params=params,
        max_tokens=max_tokens,
        subjects=subjects,
        seed=seed,
        prompt_version=prompt_version,
        shuffle=shuffle,
    )
    return insert_run(session, selection)


def select_run(
    session: Session,
    *,
    n: int,
    samples: int,
    teacher_model: str,
    params: dict[str, object],
    max_tokens: int,
    subjects: Sequence[str] = (),
    seed: int = 0,
    prompt_version: str = PROMPT_VERSION,
    shuffle: bool = True,
) -> RunSelection:
    """Choose the questions and option orders of a run; reads only.

    A question is a candidate while it has fewer than `samples` samples for this teacher and
    prompt version; it gets the sample indices it lacks. Questions that already have some
    samples come first (a larger --samples tops them up), then questions never asked."""
    if n < 1:
        raise UserError("--n must be at least 1")
    if samples < 1:
        raise UserError("--samples must be at least 1")
    query = select(
        Question.id,
        Question.subject,
        Question.answer_index,
        Question.choices,
        Question.option_refs,
        func.length(Question.question),
    )
    if subjects:
        known = set(session.scalars(select(Question.subject).distinct()))
        unknown = sorted(set(subjects) - known)
        if unknown:
            raise UserError(
                f"unknown subject(s): {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known)) or 'none (import questions first)'}"
            )
        query = query.where(Question.subject.in_(subjects))
    have = _sample_indices(session, teacher_model=teacher_model, prompt_version=prompt_version)
    shapes: dict[int, tuple[int, OrderRule]] = {}  # question id -> (answer index, order rule)
    sizes: dict[int, int] = {}  # question id -> characters of its prompt
    partial: list[tuple[int, str]] = []
    unasked: list[tuple[int, str]] = []
    for qid, subject, answer_index, choices, refs, length in session.execute(query):
        taken = have.get(qid, set())
        if all(k in taken for k in range(samples)):
            continue
        rule = OrderRule.of(len(choices), refs) if shuffle else OrderRule.unshuffled(len(choices))
        shapes[qid] = (answer_index, rule)
        sizes[qid] = (length or 0) + sum(len(str(c)) for c in choices)
        (partial if taken else unasked).append((qid, subject))
    if not shapes:
        if session.scalar(select(Question.id).limit(1)) is None:
            raise UserError("no questions in the database; run `distill import FILE` first")
        raise UserError(
            f"every matching question already has jobs for {samples} sample(s) of "
            f"{teacher_model} / {prompt_version}; nothing to enqueue "
            "(a larger --samples tops questions up)"
        )
    picked = pick_questions(partial, n=n, seed=seed)
    picked += pick_questions(unasked, n=n - len(picked), seed=seed) if len(picked) < n else []
    wanted = [(qid, k) for qid in picked for k in range(samples) if k not in have.get(qid, set())]
    orders = balanced_orders([(shapes[qid][1], shapes[qid][0]) for qid, _ in wanted], seed=seed)
    longest = session.get(Question, max(picked, key=sizes.__getitem__))
    assert longest is not None
    return RunSelection(
        teacher_model=teacher_model,
        prompt_version=prompt_version,
        params={**params, "max_tokens": max_tokens, "shuffle": shuffle},
        samples=samples,
        requested=n,
        seed=seed,
        max_tokens=max_tokens,
        jobs=[(qid, k, order) for (qid, k), order in zip(wanted, orders, strict=True)],
        questions=len(picked),
        available=len(shapes),
        topped_up=sum(1 for qid in picked if qid in have),
        longest_prompt=build_messages(longest.question, longest.choices),
    )


def insert_run(session: Session, selection: RunSelection) -> EnqueuePlan:
    """Store the run and its queued jobs, in the caller's transaction."""
    run = Run(
        teacher_model=selection.teacher_model,
        prompt_version=selection.prompt_version,
        params=selection.params,
        samples_per_question=selection.samples,
        requested_n=selection.requested,
        seed=selection.seed,
    )
    session.add(run)
    session.flush()
    # Rows are built a batch at a time: a million jobs' dicts at once would be gigabytes.
    for start in range(0, len(selection.jobs), 1000):
        session.execute(
            insert(Job),
            [
                {
                    "run_id": run.id,
                    "question_id": qid,
                    "teacher_model": selection.teacher_model,
                    "prompt_version": selection.prompt_version,
                    "sample_index": k,
                    "max_tokens": selection.max_tokens,
                    "choice_order": order,
                }
                for qid, k, order in selection.jobs[start : start + 1000]
            ],
        )
    job_ids = list(session.scalars(select(Job.id).where(Job.run_id == run.id).order_by(Job.id)))
    return EnqueuePlan(
        run_id=run.id,
        job_ids=job_ids,
        questions=selection.questions,
        available=selection.available,
        requested=selection.requested,
        topped_up=selection.topped_up,
    )


def _sample_indices(
    session: Session, *, teacher_model: str, prompt_version: str
) -> dict[int, set[int]]:
    """Per question, the sample indices it has jobs for (any budget: a retry with a larger
    --max-tokens re-asks the same sample)."""
    found: dict[int, set[int]] = defaultdict(set)
    rows = session.execute(
        select(Job.question_id, Job.sample_index)
        .where(Job.teacher_model == teacher_model, Job.prompt_version == prompt_version)
        .distinct()
    )
    for qid, k in rows:
        found[qid].add(k)
    return found
