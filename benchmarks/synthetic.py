"""Synthetic rows for the benchmarks that build large databases with bulk inserts (export, ui,
enqueue): MMLU-shaped questions (4 options, 57 subjects) and a run's row."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import Connection, insert

from distill.models import Run
from distill.prompts import PROMPT_VERSION
from schemas.mcq import MCQRecord

SUBJECTS = [f"subject_{i:02d}" for i in range(57)]  # MMLU has 57
_TEXT = (
    "so the option seems plausible but wait let me reconsider the definition of this term "
    "because energy is conserved and the second statement contradicts the first hence"
)
WORDS = _TEXT.split(" ")
TEACHER = "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"


def question_row(qi: int, rng: random.Random) -> dict[str, Any]:
    """Question number `qi` (id qi + 1), with its content uid, as `questions` stores it."""
    record = MCQRecord(
        question=f"Benchmark question {qi}: " + " ".join(rng.choices(WORDS, k=30)) + "?",
        choices=[f"choice {j} of question {qi}" for j in range(4)],
        answer_index=rng.randrange(4),
        subject=SUBJECTS[qi % len(SUBJECTS)],
        source="bench",
    )
    return {
        "id": qi + 1,
        "uid": record.uid,
        "source": "bench",
        "subject": record.subject,
        "question": record.question,
        "choices": record.choices,
        "answer_index": record.answer_index,
    }


def insert_run(conn: Connection, *, samples: int, questions: int, seed: int) -> int:
    """An enqueue run of the 32B teacher at R1's sampling; returns its id."""
    return int(
        conn.execute(
            insert(Run).returning(Run.id),
            [
                {
                    "kind": "enqueue",
                    "teacher_model": TEACHER,
                    "prompt_version": PROMPT_VERSION,
                    "params": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 8192},
                    "samples_per_question": samples,
                    "requested_n": questions,
                    "seed": seed,
                }
            ],
        ).scalar_one()
    )
