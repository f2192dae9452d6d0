"""Where a source keeps the question, its options, the gold answer and the subject.

A `Layout` is a fully resolved column mapping. Presets are layouts of well-known datasets; a
`FieldMapping` overrides parts of a preset (or of the generic question/choices/answer layout).
With neither, the columns found pick the preset, so `distill import mmlu.parquet` just works."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

from distill.errors import UserError
from distill.importers.answers import AnswerFormat

PresetName = Literal["mmlu", "mmlu-pro", "arc", "openbookqa", "commonsenseqa", "sciq"]
PRESET_NAMES: tuple[PresetName, ...] = get_args(PresetName)


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """Column names given by the user; None keeps the preset's (or the generic) choice.

    `choices` is one column holding a list (or a JSON list, or ARC-style {"text", "label"}), or
    several columns holding one option each. `gold_first` says the first of several choice columns
    holds the correct answer (SciQ, GPQA); the options are then shuffled deterministically."""

    question: str | None = None
    choices: tuple[str, ...] | None = None
    answer: str | None = None
    subject: str | None = None
    gold_first: bool = False
    answer_format: AnswerFormat = "auto"

    def is_empty(self) -> bool:
        return self == FieldMapping()


@dataclass(frozen=True, slots=True)
class Layout:
    """A resolved mapping. `answer` None means the first choice column is the gold answer."""

    question: str
    choices: tuple[str, ...]
    answer: str | None
    subject: str | None = None
    default_subject: str = "unknown"
    answer_format: AnswerFormat = "auto"
    preset: str | None = None
    # Columns whose presence identifies the preset when auto-detecting (beyond the required ones).
    signature: tuple[str, ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        answer = () if self.answer is None else (self.answer,)
        return (self.question, *self.choices, *answer)


_SCIQ_CHOICES = ("correct_answer", "distractor1", "distractor2", "distractor3")

PRESETS: dict[str, Layout] = {
    "mmlu": Layout("question", ("choices",), "answer", subject="subject", preset="mmlu"),
    "mmlu-pro": Layout("question", ("options",), "answer", subject="category", preset="mmlu-pro"),
    "arc": Layout("question", ("choices",), "answerKey", preset="arc"),
    "openbookqa": Layout("question_stem", ("choices",), "answerKey", preset="openbookqa"),
    "commonsenseqa": Layout(
        "question",
        ("choices",),
        "answerKey",
        subject="question_concept",
        preset="commonsenseqa",
        signature=("question_concept",),
    ),
    "sciq": Layout("question", _SCIQ_CHOICES, None, default_subject="science", preset="sciq"),
}
assert set(PRESETS) == set(PRESET_NAMES)

# Most specific first: CommonsenseQA's columns are ARC's plus question_concept.
_DETECT_ORDER = ("sciq", "openbookqa", "commonsenseqa", "mmlu-pro", "arc", "mmlu")
_GENERIC = Layout("question", ("choices",), "answer", subject="subject")


def detect_preset(columns: Sequence[str]) -> str | None:
    """The preset whose columns are all present, or None."""
    present = set(columns)
    for name in _DETECT_ORDER:
        layout = PRESETS[name]
        if set(layout.required) | set(layout.signature) <= present:
            return name
    return None


def resolve_layout(
    *, name: str, columns: Sequence[str], preset: str | None, mapping: FieldMapping | None
) -> Layout:
    """The layout to read `name` with; UserError naming the columns found if there is none."""
    mapping = mapping or FieldMapping()
    if preset is not None:
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_NAMES)}")
        base = PRESETS[preset]
    else:
        detected = detect_preset(columns)
        if detected is None and mapping.is_empty():
            raise UserError(
                f"{name}: cannot tell which columns hold the question, options and answer "
                f"(columns: {_list(columns)}); pass --preset or --question-field, "
                "--choices-field and --answer-field"
            )
        base = PRESETS[detected] if detected else _GENERIC

    layout = replace(
        base,
        question=mapping.question or base.question,
        choices=mapping.choices or base.choices,
        answer=None if mapping.gold_first else (mapping.answer or base.answer),
        subject=mapping.subject or base.subject,
        answer_format=mapping.answer_format,
    )
    if mapping.gold_first and len(layout.choices) < 2:
        raise UserError("gold-first needs the options in several columns, the correct one first")
    # A preset's subject column is optional (MMLU's auxiliary_train has none); a user's is not.
    if mapping.subject is None and layout.subject not in columns:
        layout = replace(layout, subject=None)
    wanted = layout.required + ((layout.subject,) if layout.subject else ())
    missing = [column for column in wanted if column not in columns]
    if missing:
        raise UserError(
            f"{name}: field {missing[0]!r} not found (columns: {_list(columns)})"
            + (f"; read as preset {layout.preset}" if layout.preset else "")
        )
    return layout


def _list(columns: Sequence[str]) -> str:
    return ", ".join(columns) if columns else "none"
