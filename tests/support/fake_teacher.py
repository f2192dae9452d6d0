"""An in-process teacher with the real client's contract (async complete of a TeacherRequest,
aclose, TeacherError), scripted per prompt, for unit tests of the runner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from distill.teacher.client import TeacherError
from schemas.teacher import TeacherRequest, TeacherResult

Reply = TeacherResult | TeacherError
Script = Callable[[str, int], Reply]


def answer(letter: str, *, reasoning: str = "Let me think.", finish: str = "stop") -> TeacherResult:
    return TeacherResult(
        text=f"{reasoning}\n</think>\n\nThe answer is \\boxed{{{letter}}}.",
        finish_reason=finish,
        prompt_tokens=40,
        completion_tokens=20,
        latency_s=0.01,
        model="test-teacher",
    )


def truncated() -> TeacherResult:
    return TeacherResult(
        text="Let me think. Hmm, wait, let me think again and again",
        finish_reason="length",
        prompt_tokens=40,
        completion_tokens=64,
        latency_s=0.01,
        model="test-teacher",
    )


class FakeTeacher:
    def __init__(self, script: Script, *, delay: float = 0.0) -> None:
        self.script = script
        self.delay = delay
        self.calls: list[tuple[str, int]] = []
        self.requests: list[TeacherRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.closed = False
        self.up = True

    async def complete(self, request: TeacherRequest) -> TeacherResult:
        messages, max_tokens = request.messages, request.max_tokens
        assert [m["role"] for m in messages] == ["user"], "no system prompt for R1"
        prompt = messages[0]["content"]
        self.calls.append((prompt, max_tokens))
        self.requests.append(request)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            reply = self.script(prompt, max_tokens)
        finally:
            self.in_flight -= 1
        if isinstance(reply, TeacherError):
            raise reply
        return reply

    async def healthy(self) -> bool:
        """The outage probe: this fake answers unless a test says it is down."""
        return self.up

    async def aclose(self) -> None:
        self.closed = True
