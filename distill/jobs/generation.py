"""What is stored of one teacher exchange: a generation row's values."""

from __future__ import annotations

from typing import Any

from distill.choices import original_index
from distill.jobs.lease import ClaimedJob
from distill.teacher.grading import grade
from distill.teacher.parsing import parse_completion
from schemas.teacher import TeacherResult

# PostgreSQL text cannot hold U+0000, and a model can emit it. Replaced on every backend alike,
# and noted on the row, so that the answer is kept and the change is visible.
NUL, REPLACEMENT = "\x00", "\ufffd"
_TEXT_COLUMNS = ("raw_text", "raw_reasoning", "reasoning", "answer_text", "teacher_model")


def generation_values(job: ClaimedJob, result: TeacherResult) -> dict[str, Any]:
    """The stored exchange: the request as sent, the raw response, how it was read, and how it
    was graded."""
    parsed = parse_completion(result, n_options=job.n_options)
    outcome = grade(parsed, finish_reason=result.finish_reason, gold_letter=job.gold_letter)
    predicted_index = original_index(parsed.letter, job.choice_order) if parsed.letter else None
    values: dict[str, Any] = {
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
        "notes": None,
    }
    changed = [c for c in _TEXT_COLUMNS if isinstance(values[c], str) and NUL in values[c]]
    for column in changed:
        values[column] = values[column].replace(NUL, REPLACEMENT)
    if changed:
        values["notes"] = [f"U+0000 replaced by U+FFFD in {column}" for column in changed]
    return values


def without_nul(text: str) -> str:
    """An error message as stored (the same rule as generation text)."""
    return text.replace(NUL, REPLACEMENT)
