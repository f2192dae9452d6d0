"""A small database that exercises every page: three runs, three subjects, every outcome,
truncated chains, a failed job with its error, a worker heart-beating, a chain full of markup
and LaTeX, and a 20,000-token chain. Used by the in-process tests and the browser tier."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, select

from distill.db import session_scope
from distill.models import Generation, Job, JobStatus, Outcome, Worker, utcnow
from tests.support.factories import add_job, add_question, add_run, add_sample, rotated

SCRIPT_CHAIN = (
    "First, note <script>alert(1)</script> is just text here.\n\n"
    "The area grows as $x^2$, and $$\\frac{a}{b} = \\sqrt{c}$$ holds.\n\n"
    'Also <img src=x onerror="alert(2)"> and a closing </think> inside.'
)
XSS_QUESTION = 'Which tag is <b>bold</b>? <img src=x onerror="alert(3)">'
WORDS = [
    "so",
    "consider",
    "the",
    "energy",
    "term",
    "then",
    "check",
    "option",
    "again",
    "because",
    "the",
    "sum",
    "is",
]


def long_chain(tokens: int = 20_000, seed: int = 0) -> str:
    """About `tokens` tokens (one word + space ~ 1.3 tokens): paragraphs with some LaTeX."""
    rng = random.Random(seed)
    words = int(tokens / 1.3)
    paragraphs = []
    for start in range(0, words, 120):
        text = " ".join(rng.choices(WORDS, k=min(120, words - start)))
        paragraphs.append(f"{text} so $x_{{{start}}} + y^2$ follows.")
    return "\n\n".join(paragraphs)


@dataclass(frozen=True, slots=True)
class Seeded:
    runs: tuple[int, int, int]
    script_generation: int
    long_generation: int
    truncated_generations: tuple[int, ...]
    sibling_question: int  # a question with four samples
    failed_job: int
    beside_failure: int  # a generation whose question has the failed job
    generations: int


def seed(engine: Engine) -> Seeded:
    now = utcnow()
    truncated: list[int] = []
    with session_scope(engine) as s:
        run_a = add_run(s, samples_per_question=4)
        run_b = add_run(s, samples_per_question=2, params={"temperature": 0.6, "max_tokens": 4096})
        run_c = add_run(s, samples_per_question=1, teacher_model="other-teacher")
        math = [add_question(s, subject="math", answer_index=i % 4) for i in range(4)]
        history = [add_question(s, subject="history", answer_index=1) for _ in range(3)]
        xss = add_question(
            s, subject="math", question=XSS_QUESTION, choices=["<b>bold</b>", "b", "c", "d"]
        )
        outcomes = [Outcome.correct, Outcome.incorrect, Outcome.truncated, Outcome.correct]
        for qi, question in enumerate(math):
            for k in range(4):
                outcome = outcomes[(qi + k) % 4] if qi else Outcome.correct
                _, g = add_sample(
                    s,
                    question=question,
                    run=run_a,
                    sample_index=k,
                    choice_order=rotated(4, k),
                    outcome=outcome,
                    reasoning=f"Sample {k} of math question {qi}: the energy is conserved.",
                    completion_tokens=200 + 150 * qi + 40 * k,
                )
                if outcome is Outcome.truncated:
                    truncated.append(g.id)
        for qi, question in enumerate(history):
            for k, outcome in enumerate(
                [Outcome.unparseable, Outcome.empty, Outcome.correct, Outcome.incorrect]
            ):
                _, g = add_sample(
                    s,
                    question=question,
                    run=run_a,
                    sample_index=k,
                    outcome=outcome,
                    reasoning=None if outcome is Outcome.empty else f"History {qi}/{k}: dates.",
                    completion_tokens=90 + 30 * k,
                )
        _, script = add_sample(
            s, question=xss, run=run_a, outcome=Outcome.correct, reasoning=SCRIPT_CHAIN
        )
        add_sample(
            s,
            question=xss,
            run=run_a,
            sample_index=1,
            choice_order=rotated(4, 1),
            outcome=Outcome.incorrect,
            reasoning="Another look: the line $y = mx + b$ has slope $m$, so D.",
        )
        # Run B: in progress, biology, with a 20,000-token truncated chain and a failure.
        biology = [add_question(s, subject="biology", answer_index=2) for _ in range(3)]
        _, long = add_sample(
            s,
            question=biology[0],
            run=run_b,
            outcome=Outcome.truncated,
            reasoning=long_chain(),
            completion_tokens=20_000,
            max_tokens=20_000,
        )
        truncated.append(long.id)
        add_sample(s, question=biology[0], run=run_b, sample_index=1, outcome=Outcome.correct)
        failed = add_job(s, question=biology[1], run=run_b, status=JobStatus.failed)
        failed.attempts = 3
        failed.last_error = "teacher: HTTP 500 <html>Internal error</html> after 3 tries"
        add_job(s, question=biology[1], run=run_b, sample_index=1, status=JobStatus.running)
        _, beside_failure = add_sample(
            s, question=biology[1], run=run_b, sample_index=2, outcome=Outcome.incorrect
        )
        add_job(s, question=biology[2], run=run_b, status=JobStatus.queued)
        add_job(s, question=biology[2], run=run_b, sample_index=1, status=JobStatus.queued)
        # Run C: another teacher, the same math questions once more.
        for question in math[:2]:
            add_sample(s, question=question, run=run_c, outcome=Outcome.correct)
        s.add(
            Worker(
                name="host-a:4242",
                teacher_model="test-teacher",
                concurrency=64,
                in_flight=1,
                started_at=now - timedelta(minutes=5),
                heartbeat_at=now,
            )
        )
        s.flush()
        # Finish times spread over the last ten minutes, so throughput has a shape.
        jobs = s.scalars(select(Job).where(Job.finished_at.is_not(None)).order_by(Job.id)).all()
        for i, job in enumerate(jobs):
            job.finished_at = now - timedelta(seconds=600 - 12 * i)
            job.started_at = job.finished_at - timedelta(seconds=5 + i % 7)
        for generation in s.scalars(select(Generation)):
            tokens = generation.completion_tokens or 0
            generation.latency_s = round(0.4 + tokens / 210 + (generation.id % 5) * 0.3, 2)
        count = len(s.scalars(select(Generation.id)).all())
        ids = (run_a.id, run_b.id, run_c.id)
        return Seeded(
            runs=ids,
            script_generation=script.id,
            long_generation=long.id,
            truncated_generations=tuple(truncated),
            sibling_question=math[1].id,
            failed_job=failed.id,
            beside_failure=beside_failure.id,
            generations=count,
        )
