"""What the teacher returned, how its text was read, and what `distill teacher check` found."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

# How the server laid out the chain of thought:
#   tagged            "<think>chain</think>answer" in the message text
#   open_tag_omitted  "chain</think>answer": the R1 chat template opened "<think>\n" itself
#   separate_field    the server ran a reasoning parser: chain in `reasoning_content`/`reasoning`
#   no_marker         text without any think marker (an unfinished chain, or a non-reasoning model)
#   empty             nothing but whitespace anywhere
ResponseShape = Literal["tagged", "open_tag_omitted", "separate_field", "no_marker", "empty"]


class TeacherRequest(BaseModel):
    """One chat completion request, exactly as sent and as stored with its generation.

    For a job it is the request of record, decided at enqueue: the job's model, the run's
    sampling parameters, the job's token budget and the prompt of the job's prompt version. No
    `seed`: a per-request seed crashes vLLM's CPU engine, and R1 guidance is sampling anyway."""

    model_config = ConfigDict(frozen=True)

    model: str
    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float | None = None  # None: not sent (the server's default)
    top_p: float | None = None

    def params(self) -> dict[str, float | int]:
        """The sampling parameters sent: what was set, and max_tokens."""
        sent: dict[str, float | int] = {}
        if self.temperature is not None:
            sent["temperature"] = self.temperature
        if self.top_p is not None:
            sent["top_p"] = self.top_p
        sent["max_tokens"] = self.max_tokens
        return sent

    def body(self) -> dict[str, Any]:
        """The JSON body of POST /chat/completions."""
        return {"model": self.model, "messages": self.messages, **self.params()}

    def stored(self) -> dict[str, Any]:
        """As kept in generations.request."""
        return {"model": self.model, "messages": self.messages, "params": self.params()}


class TeacherResult(BaseModel):
    """One successful chat completion, as the server reported it."""

    model_config = ConfigDict(frozen=True)

    text: str  # message content; "" when the server sent null
    # The chain when the server returned it apart from the content (`reasoning_content` in vLLM
    # before 0.10 and DeepSeek's API, `reasoning` in newer vLLM); None when it did not.
    reasoning_content: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float  # the successful request only, not earlier failed tries or backoff
    model: str  # as the server named it in the response


class ParsedCompletion(BaseModel):
    """The think block and answer read out of a completion (see distill.teacher.parsing)."""

    model_config = ConfigDict(frozen=True)

    shape: ResponseShape
    # True when the chain visibly ended: a close marker in the text, or (separate field) an
    # answer after the chain. Grading decides what an unclosed chain means.
    closed: bool
    reasoning: str | None
    answer_text: str | None  # text after the close marker; None when the chain never closed
    letter: str | None  # taken from answer_text only, within the question's options


class ProbeReport(BaseModel):
    """What `distill teacher check` learned from one tiny request."""

    url: str
    model: str  # as configured
    served_models: list[str]
    response_model: str  # as the server named it in the completion
    latency_s: float
    shape: ResponseShape
    finish_reason: str | None
    completion_tokens: int | None
    sample: str  # the start of what came back, for a human to eyeball
    note: str  # what the shape means for distill, in one sentence
    max_model_len: int | None = None  # the served context (prompt + completion), if reported
    max_tokens: int | None = None  # the budget checked against it
    shortest_prompt_tokens: int | None = None  # the instruction alone, through the template
