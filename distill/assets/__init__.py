"""Files shipped with distill: the tiny teacher (a 0.85 M-parameter model in DeepSeek-R1's
format, served by vLLM on CPU) and the sample questions it was held out on. `distill demo`, the
real-vLLM test tier and the benchmarks use them; `scripts/build_tiny_teacher.py` rebuilds them."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent
TINY_TEACHER_DIR = ASSETS / "tiny_teacher"
TINY_TEACHER_NAME = "tiny-teacher"
# 40 questions of 2–4 options in the tiny teacher's four families, none of them seen in training.
SAMPLE_QUESTIONS = ASSETS / "tiny_mcq.jsonl"
