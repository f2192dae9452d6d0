"""`distill teacher check`: is the configured model served, and how does the server lay out the
chain of thought? One tiny question answers both."""

from __future__ import annotations

from distill import redact
from distill.prompts import build_messages
from distill.teacher.client import OpenAITeacher, TeacherError, excerpt
from distill.teacher.parsing import parse_completion
from schemas.teacher import ProbeReport, ResponseShape

PROBE_MAX_TOKENS = 32
PROBE_QUESTION = ("What is 2 + 2?", ["3", "4", "5", "6"])


async def probe(teacher: OpenAITeacher, *, max_tokens: int = PROBE_MAX_TOKENS) -> ProbeReport:
    """Check the server serves the configured model and show how it lays out reasoning."""
    served = await teacher.list_models()
    if teacher.model not in served:
        raise TeacherError(
            f"model {teacher.model!r} is not served at {redact.url(teacher.base_url)}; it serves: "
            f"{', '.join(served) or 'nothing'} (set DISTILL_TEACHER_MODEL to one of these)",
            retryable=False,
            status=404,
        )
    question, choices = PROBE_QUESTION
    request = teacher.request(build_messages(question, choices), max_tokens=max_tokens)
    result = await teacher.complete(request)
    shape = parse_completion(result, n_options=len(choices)).shape
    return ProbeReport(
        url=redact.url(teacher.base_url),
        model=teacher.model,
        served_models=served,
        response_model=result.model,
        latency_s=result.latency_s,
        shape=shape,
        finish_reason=result.finish_reason,
        completion_tokens=result.completion_tokens,
        sample=excerpt(result.reasoning_content or result.text, 200),
        note=SHAPE_NOTES[shape],
    )


SHAPE_NOTES: dict[ResponseShape, str] = {
    "separate_field": "the server runs a reasoning parser: the chain arrives in "
    "reasoning_content/reasoning and the answer in the content; distill reads both.",
    "tagged": "the text opens with <think>: the chat template does not open it; distill parses it.",
    "open_tag_omitted": "the text closes </think> without opening it: the chat template opens "
    "<think> itself (DeepSeek-R1 style); distill parses it.",
    "no_marker": "no think markers in this short reply: expected when the chat template opens "
    "<think> itself and the chain is still running at the token cap; a model that never "
    "writes </think> would grade every generation as truncated.",
    "empty": "the server returned no text at all: check the model and its chat template.",
}
