"""The export preview: what `distill export` would keep and drop for a selection, and why.

It runs export's own reading and planning (`load_data`, `build_plan`), so its funnel is the one
the dataset card reports; nothing is written. Reading every finished generation of the selection
takes seconds at 100,000, so the page computes it in the background (distill.ui.cache) and keys
the result by the options and the database's state (finished generations, newest id)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, func, select

from distill.choices import LETTERS
from distill.db import make_engine
from distill.errors import UserError
from distill.export.pipeline import load_data
from distill.export.plan import build_plan
from distill.export.select import Selection
from distill.models import Generation
from schemas.export import FunnelStep, RecordContext
from schemas.export_options import ExportFormat, ExportOptions, PerQuestion, Split


@dataclass(frozen=True, slots=True)
class PreviewRequest:
    runs: tuple[int, ...] = ()
    subjects: tuple[str, ...] = ()
    per_question: PerQuestion = PerQuestion.best
    balance: bool | None = None
    max_reasoning_tokens: int | None = None

    def options(self) -> ExportOptions:
        return ExportOptions(
            format=ExportFormat.both,
            out=Path("."),  # never written: the preview only plans
            runs=self.runs,
            subjects=self.subjects,
            per_question=self.per_question,
            balance=self.balance,
            max_reasoning_tokens=self.max_reasoning_tokens,
        )

    def command(self) -> str:
        """The `distill export` command this previews."""
        parts = ["distill export --format both --out data"]
        parts += [f"--run {r}" for r in self.runs]
        parts += [f"--subject '{s}'" for s in self.subjects]
        if self.per_question is not PerQuestion.best:
            parts.append(f"--per-question {self.per_question}")
        if self.balance is not None:
            parts.append("--balance" if self.balance else "--no-balance")
        if self.max_reasoning_tokens is not None:
            parts.append(f"--max-reasoning-tokens {self.max_reasoning_tokens}")
        return " ".join(parts)


@dataclass(slots=True)
class FormatPreview:
    funnel: list[FunnelStep]
    balance: str
    records: dict[str, int]  # by split
    letters: dict[str, dict[str, int]]  # split -> gold letter -> records
    fixes: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Preview:
    question_funnel: list[FunnelStep] = field(default_factory=list)
    questions: dict[str, int] = field(default_factory=dict)
    formats: dict[str, FormatPreview] = field(default_factory=dict)
    unfinished: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # why nothing would be exported


def state_key(engine: Engine) -> tuple[int, int]:
    """Changes whenever a generation is stored (generations are only ever inserted)."""
    with engine.connect() as conn:
        count, newest = conn.execute(
            select(func.count(Generation.id), func.max(Generation.id))
        ).one()
    return int(count or 0), int(newest or 0)


def preview_at(url: str, request: PreviewRequest) -> Preview:
    """`compute_preview` on the database at `url`: what the UI runs in its worker process."""
    engine = make_engine(url)
    try:
        return compute_preview(engine, request=request)
    finally:
        engine.dispose()


def compute_preview(engine: Engine, *, request: PreviewRequest) -> Preview:
    options = request.options()
    ctx = RecordContext(
        think_open=options.think_open,
        think_close=options.think_close,
        answer_template=options.answer_template,
    )
    selection = Selection(runs=options.runs, subjects=options.subjects)
    try:
        data, unfinished = load_data(
            engine, selection=selection, ctx=ctx, counter=None, chains=True
        )
        plan = build_plan(data, options=options, eval_index=None)
    except UserError as exc:
        return Preview(error=str(exc))
    formats = {}
    for fmt, fmt_plan in plan.formats.items():
        splits = fmt_plan.by_split()
        widest = max((r.n_options for rs in splits.values() for r in rs), default=0)
        letters: dict[str, dict[str, int]] = {}
        for split, records in splits.items():
            counts = Counter(r.letter for r in records)
            letters[str(split)] = {letter: counts[letter] for letter in LETTERS[:widest]}
        formats[str(fmt)] = FormatPreview(
            funnel=list(fmt_plan.funnel),
            balance=fmt_plan.balance,
            records={str(s): len(r) for s, r in fmt_plan.by_split().items()},
            letters=letters,
            fixes=dict(fmt_plan.fixes),
        )
    return Preview(
        question_funnel=list(plan.question_funnel),
        questions={str(s): n for s, n in plan.questions.items()},
        formats=formats,
        unfinished=unfinished,
        warnings=list(plan.warnings),
    )


__all__ = ["Preview", "PreviewRequest", "Split", "compute_preview", "preview_at", "state_key"]
