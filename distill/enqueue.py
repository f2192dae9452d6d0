"""Choosing questions for a run and creating its jobs.

Selection is deterministic for a seed: questions without jobs for this teacher and prompt are
shuffled within each subject, and subjects take turns, so a small run still covers every subject.
Each job gets an option permutation chosen so gold letters come out balanced over the run."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import exists, insert, select
from sqlalchemy.orm import Session

from distill.errors import UserError
from distill.models import Job, Question, Run
from distill.prompts import PROMPT_VERSION


@dataclass(frozen=True)
class EnqueuePlan:
    run_id: int
    job_ids: list[int]
    questions: int
    available: int
    requested: int


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


class LetterBalancer:
    """Hands out option permutations so that, per option count, the gold answer lands on each
    position equally often (exactly, up to one incomplete block of positions)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._blocks: dict[int, list[int]] = {}

    def _next_position(self, n_options: int) -> int:
        block = self._blocks.get(n_options)
        if not block:
            block = list(range(n_options))
            self._rng.shuffle(block)
            self._blocks[n_options] = block
        return block.pop()

    def permutation(self, n_options: int, answer_index: int) -> list[int]:
        """choice_order: presented option i is original option choice_order[i]."""
        target = self._next_position(n_options)
        others = [i for i in range(n_options) if i != answer_index]
        self._rng.shuffle(others)
        others.insert(target, answer_index)
        return others


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
) -> EnqueuePlan:
    """Create a run with n × samples queued jobs. The caller commits, then publishes the ids."""
    if n < 1:
        raise UserError("--n must be at least 1")
    if samples < 1:
        raise UserError("--samples must be at least 1")
    already_asked = exists().where(
        Job.question_id == Question.id,
        Job.teacher_model == teacher_model,
        Job.prompt_version == prompt_version,
    )
    query = select(Question.id, Question.subject, Question.answer_index, Question.choices).where(
        ~already_asked
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
    shapes: dict[int, tuple[int, int]] = {}  # question id -> (answer index, option count)
    candidates: list[tuple[int, str]] = []
    for qid, subject, answer_index, choices in session.execute(query):
        candidates.append((qid, subject))
        shapes[qid] = (answer_index, len(choices))
    if not candidates:
        if session.scalar(select(Question.id).limit(1)) is None:
            raise UserError("no questions in the database; run `distill import FILE` first")
        raise UserError(
            f"every matching question already has jobs for {teacher_model} / {prompt_version}; "
            "nothing to enqueue"
        )
    picked = pick_questions(candidates, n=n, seed=seed)

    run = Run(
        teacher_model=teacher_model,
        prompt_version=prompt_version,
        params={**params, "max_tokens": max_tokens},
        samples_per_question=samples,
        requested_n=n,
        seed=seed,
    )
    session.add(run)
    session.flush()

    balancer = LetterBalancer(seed)
    rows = [
        {
            "run_id": run.id,
            "question_id": qid,
            "teacher_model": teacher_model,
            "prompt_version": prompt_version,
            "sample_index": k,
            "max_tokens": max_tokens,
            "choice_order": balancer.permutation(shapes[qid][1], shapes[qid][0]),
        }
        for qid in picked
        for k in range(samples)
    ]
    for start in range(0, len(rows), 1000):
        session.execute(insert(Job), rows[start : start + 1000])
    job_ids = list(session.scalars(select(Job.id).where(Job.run_id == run.id).order_by(Job.id)))
    return EnqueuePlan(
        run_id=run.id,
        job_ids=job_ids,
        questions=len(picked),
        available=len(candidates),
        requested=n,
    )
