"""Whether a completion budget fits the teacher's context.

vLLM serves `--max-model-len` tokens per sequence: the prompt *and* the completion. A request
whose prompt plus `max_tokens` exceeds it is refused with HTTP 400, and the job fails; so the
budget a job really has is the context minus its prompt. `distill enqueue` and `distill teacher
check` read the context from `/v1/models` (vLLM reports `max_model_len`) and the length of the
shortest possible prompt (the instruction alone, through the server's chat template, from vLLM's
`/tokenize`), and refuse a budget that no prompt leaves room for."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from distill import redact
from distill.config import Settings
from distill.errors import UserError
from distill.prompts import build_messages


class _Counts(Protocol):
    base_url: str
    model: str

    async def served_models(self) -> dict[str, int | None]: ...

    async def prompt_tokens(self, messages: list[dict[str, str]]) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Budget:
    model: str
    url: str
    max_tokens: int
    context: int | None  # max_model_len; None when the server does not report it
    floor: int | None  # tokens of the shortest possible prompt; None when unknown

    def refusal(self) -> str | None:
        """One line saying why `max_tokens` cannot fit any prompt, or None when it can."""
        if self.context is None:
            return None
        floor = self.floor or 1
        if self.max_tokens + floor <= self.context:
            return None
        largest = self.context - floor
        prompt = f"the shortest prompt takes {floor}" if self.floor else "a prompt takes some"
        return (
            f"--max-tokens {self.max_tokens} cannot fit: {self.model} at "
            f"{redact.url(self.url)} serves {self.context} tokens of context "
            f"(prompt + completion) and {prompt}; use "
            f"--max-tokens {largest} or less, or serve a longer context "
            "(DISTILL_SERVE_MAX_MODEL_LEN)"
        )

    def long_prompt_warning(self, prompt_tokens: int) -> str | None:
        """What a prompt this long means for its job, when it does not leave the full budget."""
        if self.context is None or prompt_tokens + self.max_tokens <= self.context:
            return None
        if prompt_tokens >= self.context:
            return (
                f"the longest prompt of this run takes {prompt_tokens} tokens, the whole of the "
                f"teacher's {self.context}-token context: its job will fail (HTTP 400)"
            )
        return (
            f"the longest prompt of this run takes {prompt_tokens} tokens, which leaves "
            f"{self.context - prompt_tokens} of --max-tokens {self.max_tokens} in the teacher's "
            f"{self.context}-token context: vLLM shortens such budgets, so those chains end "
            "truncated sooner"
        )


async def read_budget(teacher: _Counts, *, max_tokens: int) -> Budget:
    """The served context and the shortest prompt, asked of the server (TeacherError if it
    cannot be reached)."""
    served = await teacher.served_models()
    context = served.get(teacher.model)
    floor = await teacher.prompt_tokens(build_messages("", [])) if context is not None else None
    return Budget(teacher.model, teacher.base_url, max_tokens, context, floor)


def check_enqueue_budget(
    settings: Settings, *, max_tokens: int, longest_prompt: list[dict[str, str]]
) -> list[str]:
    """What `distill enqueue` checks before it writes a run: raises UserError for a budget that
    no prompt leaves room for; returns warnings (the longest prompt cuts the budget short, or
    the teacher does not answer yet, which is normal while vLLM loads a 32B model)."""
    from distill.teacher.client import TeacherError

    try:
        budget, tokens = asyncio.run(_read(settings, max_tokens, longest_prompt))
    except TeacherError:
        return [
            f"teacher not reachable at {redact.url(settings.teacher_url)}; "
            f"--max-tokens {max_tokens} not checked against its context length"
        ]
    refusal = budget.refusal()
    if refusal is not None:
        raise UserError(refusal)
    warning = budget.long_prompt_warning(tokens) if tokens is not None else None
    return [warning] if warning is not None else []


async def _read(
    settings: Settings, max_tokens: int, longest: list[dict[str, str]]
) -> tuple[Budget, int | None]:
    from distill.teacher.client import OpenAITeacher

    quick = settings.model_copy(update={"request_timeout": 10.0, "request_retries": 1})
    async with OpenAITeacher.from_settings(quick) as teacher:
        budget = await read_budget(teacher, max_tokens=max_tokens)
        tokens = await teacher.prompt_tokens(longest) if budget.context is not None else None
        return budget, tokens
