"""The options of `distill export`: what it can be asked, validated once and recorded in the
manifest. Kept apart from the record and manifest models so that the command line can read the
choices and defaults without building those."""

from __future__ import annotations

import enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Format(enum.StrEnum):
    """One output format: what a record's assistant turn is."""

    reasoning = "reasoning"  # think block with the chain, then the answer line
    direct = "direct"  # the answer line alone


class ExportFormat(enum.StrEnum):
    """What `--format` asks for: one format, or both."""

    reasoning = "reasoning"
    direct = "direct"
    both = "both"

    def formats(self) -> tuple[Format, ...]:
        if self is ExportFormat.both:
            return (Format.reasoning, Format.direct)
        return (Format(self.value),)


class OutputKind(enum.StrEnum):
    disk = "disk"  # datasets.DatasetDict.save_to_disk
    jsonl = "jsonl"
    parquet = "parquet"


class PerQuestion(enum.StrEnum):
    best = "best"  # the shortest correct chain of each question
    all = "all"


class Curriculum(enum.StrEnum):
    easy_to_hard = "easy-to-hard"
    hard_to_easy = "hard-to-easy"
    none = "none"  # a seeded shuffle


class Split(enum.StrEnum):
    train = "train"
    validation = "validation"


class TemplateMode(enum.StrEnum):
    """How reasoning records carry the chain so that the student's chat template keeps it."""

    content = "content"  # the think block inside the assistant `content`
    reasoning_content = "reasoning_content"  # chain in the assistant message's `reasoning_content`
    text = "text"  # a pre-rendered `text` column; `messages` alone would lose the chain


class ExportOptions(BaseModel):
    """Everything `distill export` can be asked; validated once, recorded in the manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: ExportFormat
    out: Path
    to: OutputKind = OutputKind.disk
    runs: tuple[int, ...] = ()
    subjects: tuple[str, ...] = ()
    teacher_model: str | None = None
    per_question: PerQuestion = PerQuestion.best
    max_reasoning_tokens: int | None = Field(None, ge=1)
    tokenizer: Path | None = None
    val_size: int | None = Field(None, ge=0)
    curriculum: Curriculum = Curriculum.easy_to_hard
    stages: int | None = Field(None, ge=1)
    # None: on for direct (options are re-permuted), off for reasoning (see docs/export.md).
    balance: bool | None = None
    decontaminate: tuple[Path, ...] = ()
    decontaminate_preset: str | None = None
    think_open: str = "<think>"
    think_close: str = "</think>"
    answer_template: str = "The answer is {letter}."
    student_template: Path | None = None
    seed: int = 0
    overwrite: bool = False

    @field_validator("think_open", "think_close")
    @classmethod
    def _marker_clean(cls, value: str) -> str:
        if not value or value != value.strip() or "\n" in value:
            raise ValueError("a think marker must be non-empty, without surrounding whitespace")
        return value

    @field_validator("answer_template")
    @classmethod
    def _template_has_one_letter(cls, value: str) -> str:
        if value.count("{letter}") != 1 or "\n" in value:
            raise ValueError("the answer template must be one line holding {letter} exactly once")
        rest = value.replace("{letter}", "")
        if "{" in rest or "}" in rest:
            raise ValueError("the answer template may hold no braces besides {letter}")
        return value

    @model_validator(mode="after")
    def _markers_distinct(self) -> ExportOptions:
        if self.think_open in self.think_close or self.think_close in self.think_open:
            raise ValueError("the open and close markers must not contain each other")
        for marker in (self.think_open, self.think_close):
            if marker in self.answer_template:
                raise ValueError("the answer template must not contain a think marker")
        if self.stages is not None and self.curriculum is Curriculum.none:
            raise ValueError(
                "--stages cuts the curriculum by difficulty: not with --curriculum none"
            )
        return self

    def formats(self) -> tuple[Format, ...]:
        return self.format.formats()

    def balance_for(self, fmt: Format) -> bool:
        if self.balance is not None:
            return self.balance
        return fmt == Format.direct
