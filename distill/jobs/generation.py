"""What is stored of one teacher exchange: a generation row's values."""

from __future__ import annotations

from typing import Any

from distill.choices import original_index
from distill.jobs.lease import ClaimedJob
from distill.teacher.grading import grade
from distill.teacher.parsing import parse_completion
from schemas.teacher import TeacherResult


def generation_values(job: ClaimedJob, result: TeacherResult) -> dict[str, Any]:
    """The stored exchange: the request as sent, the raw response, how it was read, and how it
    was graded."""
    parsed = parse_completion(result, n_options=job.n_options)
    outcome = grade(parsed, finish_reason=result.finish_reason, gold_letter=job.gold_letter)
    predicted_index = original_index(parsed.letter, job.choice_order) if parsed.letter else None
    return {
        "teacher_model": result.model,
        "request": job.request.stored(),
        "raw_text": result.text,
        "raw_reasoning": result.reasoning_content,
        "response_shape": parsed.shape,
        "reasoning": parsed.reasoning,
        "answer_text": parsed.answer_text,
        "predicted_letter": parsed.letter,
        "predicted_index": predicted_index,
        "finish_reason": result.finish_reason,
        "outcome": outcome,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "latency_s": result.latency_s,
    }
