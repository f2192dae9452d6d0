"""Asking an endpoint every question of an eval run that has no reply yet, many at a time, and
storing each reply as it comes (in small batches), so an interrupted eval loses at most a batch
and continues where it stopped.

A reply is read exactly as the grader reads the teacher (distill.teacher.parsing): in reasoning
mode the letter comes only from the text after the close marker, so an unclosed think block is
no answer, never a letter found inside it; in direct mode from the whole reply."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select

from distill.db import session_scope
from distill.evaluation.data import EvalQuestion
from distill.models import EvalItem, EvalRun
from distill.teacher.client import OpenAITeacher, TeacherError
from distill.teacher.parsing import extract_letter, parse_completion
from schemas.teacher import TeacherRequest, TeacherResult

# Replies written per transaction; an interruption loses at most this many (they are re-asked).
BATCH = 16
FLUSH_SECONDS = 2.0


@dataclass(frozen=True)
class Target:
    url: str
    model: str
    api_key: str | None
    max_tokens: int
    temperature: float | None
    top_p: float | None
    concurrency: int
    timeout: float
    retries: int


def pending(engine: Engine, run: EvalRun, questions: Sequence[EvalQuestion]) -> list[EvalQuestion]:
    """The run's questions without a stored reply."""
    with session_scope(engine) as session:
        done = set(
            session.scalars(select(EvalItem.record_id).where(EvalItem.eval_run_id == run.id))
        )
    return [q for q in questions if q.record_id not in done]


def read_reply(
    result: TeacherResult, question: EvalQuestion, *, mode: str
) -> tuple[str | None, bool]:
    """(letter or None, think block closed)."""
    if mode == "direct":
        return extract_letter(result.text, question.n_options), False
    parsed = parse_completion(result, n_options=question.n_options)
    closed = parsed.closed or (parsed.shape == "separate_field" and result.finish_reason == "stop")
    return parsed.letter, closed


def item_row(
    run_id: int,
    question: EvalQuestion,
    *,
    mode: str,
    result: TeacherResult | None,
    error: str | None = None,
) -> dict[str, Any]:
    base = {
        "eval_run_id": run_id,
        "record_id": question.record_id,
        "question_id": question.question_id,
        "subject": question.subject,
        "gold": question.gold,
    }
    if result is None:
        return {**base, "letter": None, "closed": False, "text": "", "error": error}
    letter, closed = read_reply(result, question, mode=mode)
    return {
        **base,
        "letter": letter,
        "closed": closed,
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "latency_s": result.latency_s,
        "text": result.text,
        "reasoning": result.reasoning_content,
    }


async def ask_all(
    engine: Engine,
    run: EvalRun,
    questions: Sequence[EvalQuestion],
    target: Target,
    *,
    on_reply: Callable[[int], None] = lambda n: None,
) -> int:
    """Ask every question, store the replies; returns how many requests failed after their
    retries (not stored: the next run of the same eval asks them again)."""
    client = OpenAITeacher(
        base_url=target.url,
        model=target.model,
        api_key=target.api_key,
        timeout=target.timeout,
        retries=target.retries,
        backoff_max=30.0,
        max_connections=target.concurrency,
    )
    buffer: list[dict[str, Any]] = []
    failed = 0
    last_flush = time.monotonic()
    slots = asyncio.Semaphore(target.concurrency)

    def flush() -> None:
        nonlocal last_flush
        if buffer:
            with session_scope(engine) as session:
                session.execute(insert(EvalItem), buffer)
            on_reply(len(buffer))
            buffer.clear()
        last_flush = time.monotonic()

    async def one(question: EvalQuestion) -> None:
        nonlocal failed
        request = TeacherRequest(
            model=target.model,
            messages=question.prompt,
            max_tokens=target.max_tokens,
            temperature=target.temperature,
            top_p=target.top_p,
        )
        async with slots:
            try:
                result = await client.complete(request)
            except TeacherError as exc:
                if exc.retryable:
                    failed += 1
                    return
                # Refused for good (a prompt beyond the context, say): no answer, stored.
                buffer.append(
                    item_row(run.id, question, mode=run.mode, result=None, error=str(exc))
                )
                return
        buffer.append(item_row(run.id, question, mode=run.mode, result=result))
        if len(buffer) >= BATCH or time.monotonic() - last_flush > FLUSH_SECONDS:
            flush()

    try:
        async with client:
            await asyncio.gather(*(one(q) for q in questions))
    finally:
        # Also on Ctrl-C: what came back is kept.
        flush()
    return failed
