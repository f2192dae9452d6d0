"""Shapes of `distill export`: one record model per output format (TRL's conversational
`messages` and `prompt`/`completion` columns) and the manifest written beside the data. The
options are in schemas.export_options (re-exported here).

Records are validated before they are written. Given a validation context
(`RecordContext.as_context()`), a record also proves the rules a student's training depends on:
one open marker, the chain, one close marker and one canonical answer line, in that order."""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from schemas.export_options import (
    Curriculum,
    ExportFormat,
    ExportOptions,
    Format,
    OutputKind,
    PerQuestion,
    Split,
    TemplateMode,
)

ANSWER_LETTER_PATTERN = r"^[A-J]$"


class RecordContext(BaseModel):
    """What a record is checked against: the markers, the answer template, the message shape."""

    think_open: str
    think_close: str
    answer_template: str
    mode: TemplateMode = TemplateMode.content

    def as_context(self) -> dict[str, Any]:
        return {"record": self}

    def answer_line(self, letter: str) -> str:
        return self.answer_template.replace("{letter}", letter)

    def answer_line_pattern(self) -> re.Pattern[str]:
        """Matches one whole answer line (use fullmatch on a stripped line)."""
        return _answer_patterns(self.answer_template)[0]

    def has_answer_line(self, text: str) -> bool:
        """True when some line of `text`, stripped, is an answer line (any letter)."""
        return _has_answer_line(self.answer_template, text)


@functools.lru_cache(maxsize=16)
def _answer_patterns(template: str) -> tuple[re.Pattern[str], str]:
    head, _, tail = template.partition("{letter}")
    line = re.compile(f"{re.escape(head)}(?P<letter>[A-J]){re.escape(tail)}")
    # A fixed piece of every answer line: finding it first (a C-speed substring scan) spares a
    # regex pass over every line of 100,000 long chains.
    probe = max(head.strip(), tail.strip(), key=len)
    return line, probe


def _has_answer_line(template: str, text: str) -> bool:
    line, probe = _answer_patterns(template)
    if not probe:
        return any(line.fullmatch(part.strip()) for part in text.split("\n"))
    at = text.find(probe)
    while at >= 0:
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        if line.fullmatch(text[start:end].strip()):
            return True
        at = text.find(probe, end)
    return False


def _context(info: ValidationInfo) -> RecordContext | None:
    ctx = info.context
    if isinstance(ctx, dict):
        record = ctx.get("record")
        if isinstance(record, RecordContext):
            return record
    return None


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1)
    # Only in TemplateMode.reasoning_content: the chain for templates that read this key.
    reasoning_content: str | None = None


class _RecordBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    question_id: str = Field(min_length=1)  # the question's uid
    subject: str
    messages: list[Message] = Field(min_length=2, max_length=2)
    prompt: list[Message] = Field(min_length=1, max_length=1)
    completion: list[Message] = Field(min_length=1, max_length=1)
    answer: str = Field(pattern=ANSWER_LETTER_PATTERN)  # gold letter, as this record presents it
    difficulty: float = Field(ge=0.0, le=1.0)  # 1 - teacher pass rate: 0 easy ... 1 hard
    curriculum_rank: int | None = Field(None, ge=0)  # position in train; None in validation
    stage: int | None = Field(None, ge=0)  # only with --stages; None in validation

    @model_validator(mode="after")
    def _conversation_shape(self) -> _RecordBase:
        user, assistant = self.messages
        if user.role != "user" or assistant.role != "assistant":
            raise ValueError("messages must be one user turn, then one assistant turn")
        if self.prompt != [user] or self.completion != [assistant]:
            raise ValueError("prompt and completion must split messages")
        if f"\n{self.answer}. " not in user.content:
            raise ValueError("the answer letter is not among the prompt's options")
        return self

    @property
    def assistant(self) -> Message:
        return self.messages[1]


class DirectRecord(_RecordBase):
    """The assistant turn is the answer line alone."""

    @model_validator(mode="after")
    def _answer_line(self, info: ValidationInfo) -> DirectRecord:
        ctx = _context(info)
        if ctx is not None and self.assistant.content != ctx.answer_line(self.answer):
            raise ValueError("the assistant turn must be exactly the answer line")
        return self


class ReasoningRecord(_RecordBase):
    """The assistant turn is one think block, then one answer line (see module docstring)."""

    reasoning_content: str = Field(min_length=1)  # the chain alone, markers stripped
    reasoning_tokens: int | None = Field(None, ge=0)  # exact, when --tokenizer was given
    completion_tokens: int | None = Field(None, ge=0)  # teacher-reported, or exact
    text: str | None = None  # only in TemplateMode.text

    @model_validator(mode="after")
    def _think_block(self, info: ValidationInfo) -> ReasoningRecord:
        ctx = _context(info)
        if ctx is None:
            return self
        chain, answer_line = self.reasoning_content, ctx.answer_line(self.answer)
        if ctx.think_open in chain or ctx.think_close in chain:
            raise ValueError("a think marker inside the reasoning")
        if ctx.has_answer_line(chain):
            raise ValueError("an answer line inside the reasoning")
        if chain != chain.strip():
            raise ValueError("the reasoning must be stripped")
        content = self.assistant.content
        if ctx.mode is TemplateMode.reasoning_content:
            if content != answer_line or self.assistant.reasoning_content != chain:
                raise ValueError("assistant must hold the answer line and the chain apart")
        else:
            expected = f"{ctx.think_open}\n{chain}\n{ctx.think_close}\n\n{answer_line}"
            if content != expected:
                raise ValueError("assistant content must be open marker, chain, close, answer")
        if (ctx.mode is TemplateMode.text) != (self.text is not None):
            raise ValueError("the text column goes with TemplateMode.text only")
        if self.text is not None and chain not in self.text:
            raise ValueError("the rendered text lost the chain")
        return self


# --- the manifest -------------------------------------------------------------------------------


class FunnelStep(BaseModel):
    """One filter step: rows it removed and rows left after it (remaining = previous - removed)."""

    step: str
    removed: int = Field(ge=0)
    remaining: int = Field(ge=0)


class SplitStats(BaseModel):
    records: int
    questions: int
    letters: dict[str, int]  # gold letter -> records, letters in order
    subjects: dict[str, int]  # subject -> records, by name


class HistogramBin(BaseModel):
    low: float
    high: float
    train: int
    validation: int


class LengthStats(BaseModel):
    unit: str
    count: int
    p50: float
    p90: float
    p99: float
    mean: float
    max: int


class TemplateReport(BaseModel):
    """What rendering one record through the student's chat template showed."""

    template: str
    mode: TemplateMode
    keeps_chain_in_content: bool
    keeps_chain_in_reasoning_content: bool | None
    end_of_turn: str | None  # what the template writes after the answer line
    detail: str
    # For the `text` shape: whether `text` leaves out the template's leading BOS because the
    # student's tokenizer adds one itself when trainers tokenize the column (None: not known).
    text_without_bos: bool | None = None


class RunInfo(BaseModel):
    run_id: int
    kind: str
    teacher_model: str
    prompt_version: str
    samples_per_question: int
    params: dict[str, Any]


class FormatManifest(BaseModel):
    format: Format
    records: int
    columns: list[str]
    funnel: list[FunnelStep]
    fixes: dict[str, int]  # repairs that kept a row (stray markers removed, ...)
    splits: dict[str, SplitStats]
    difficulty_histogram: list[HistogramBin]
    lengths: LengthStats | None
    balance: str
    template: TemplateReport | None
    files: dict[str, str]  # path relative to this format's directory -> sha256
    plots: list[str]


class ExportManifest(BaseModel):
    """manifest.json: how an export was made and what it holds. No timestamps and no output path,
    so the same database and options give the same bytes."""

    distill_version: str
    format: ExportFormat
    to: OutputKind
    options: dict[str, Any]
    seed: int
    teacher_models: list[str]
    prompt_versions: list[str]
    runs: list[RunInfo]
    unfinished_jobs: dict[str, int]  # status -> jobs in the selection that are not done
    superseded: int
    question_funnel: list[FunnelStep]
    questions: dict[str, int]  # split -> questions (shared by both formats)
    # Questions of the pool whose options refer to others, by order rule: "fixed" (original
    # order: an option names others by letter), "anchored" ("... of the above" kept in place).
    referring_options: dict[str, int] = {}
    outputs: dict[str, FormatManifest]
    warnings: list[str]


__all__ = [
    "Curriculum",
    "DirectRecord",
    "ExportFormat",
    "ExportManifest",
    "ExportOptions",
    "Format",
    "FormatManifest",
    "FunnelStep",
    "HistogramBin",
    "LengthStats",
    "Message",
    "OutputKind",
    "PerQuestion",
    "ReasoningRecord",
    "RecordContext",
    "RunInfo",
    "Split",
    "SplitStats",
    "TemplateMode",
    "TemplateReport",
]
