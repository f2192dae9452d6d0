"""`export_dataset`: read (in chunks), plan, check the student's template, write, describe."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sqlalchemy import Engine

from distill.choices import gold_letter
from distill.db import get_engine
from distill.errors import UserError
from distill.export.card import render_card
from distill.export.dedupe import EvalIndex, load_eval_index
from distill.export.outdir import MANIFEST, check_out_dir, staged
from distill.export.plan import (
    ChainInfo,
    ExportPlan,
    FormatPlan,
    LoadedData,
    build_plan,
)
from distill.export.plots import write_plots
from distill.export.records import (
    CleanChain,
    clean_chain,
    reasoning_content,
    user_prompt,
)
from distill.export.select import (
    SampleRow,
    Selection,
    count_generations,
    fetch_chains,
    load_runs,
    select_in_runs,
    stream_chains,
    stream_questions,
    stream_samples,
    unfinished_jobs,
)
from distill.export.stats import RecordStats
from distill.export.templates import (
    ChatTemplate,
    TextRenderer,
    check_template,
    load_chat_template,
)
from distill.export.tokens import TokenCounter
from distill.export.write import RecordBuilder, file_hashes, write_format
from distill.models import Outcome
from schemas.export import (
    ExportManifest,
    ExportOptions,
    Format,
    FormatManifest,
    RecordContext,
    RunInfo,
    TemplateMode,
    TemplateReport,
)

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]
PROGRESS_EVERY = 1000
TOKENIZE_BATCH = 512
NOT_DATA = {"README.md", MANIFEST}


def _distill_version() -> str:
    try:
        return version("distill")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def export_dataset(
    *, options: ExportOptions, engine: Engine | None = None, progress: Progress | None = None
) -> ExportManifest:
    """Write the datasets `options` ask for into options.out and return the manifest.

    Raises UserError when the output directory is not free, nothing matches, or nothing survives
    the filters (the message says which filter took what)."""
    engine = engine or get_engine()
    check_out_dir(options.out, overwrite=options.overwrite)
    ctx = RecordContext(
        think_open=options.think_open,
        think_close=options.think_close,
        answer_template=options.answer_template,
    )
    wants_reasoning = Format.reasoning in options.formats()
    counter = TokenCounter(options.tokenizer) if options.tokenizer and wants_reasoning else None
    template = (
        load_chat_template(options.student_template)
        if options.student_template and wants_reasoning
        else None
    )
    eval_index: EvalIndex | None = None
    if options.decontaminate:
        eval_index = load_eval_index(options.decontaminate, preset=options.decontaminate_preset)
    selection = Selection(
        runs=options.runs, subjects=options.subjects, teacher_model=options.teacher_model
    )
    data, unfinished = load_data(
        engine,
        selection=selection,
        ctx=ctx,
        counter=counter,
        chains=wants_reasoning,
        progress=progress,
    )
    plan = build_plan(data, options=options, eval_index=eval_index)
    # The plan keeps what writing needs; a million samples' rows would only sit in memory.
    run_ids, exact_tokens = {s.run_id for s in data.samples}, data.exact_tokens
    del data
    for fmt_plan in plan.formats.values():
        if not fmt_plan.train and not fmt_plan.validation:
            raise UserError(_nothing_left(fmt_plan))
    report: TemplateReport | None = None
    renderer: TextRenderer | None = None
    if template is not None and Format.reasoning in plan.formats:
        report = _check_student_template(engine, plan.formats[Format.reasoning], template, ctx)
        if report.mode is TemplateMode.text:
            renderer = TextRenderer(template, ctx=ctx.model_copy(update={"mode": report.mode}))
            report = report.model_copy(update={"text_without_bos": template.adds_bos})
            logger.warning("%s", report.detail)
    with engine.connect() as conn:
        runs = load_runs(conn, run_ids=run_ids)
    outputs: dict[Format, FormatManifest] = {}
    with staged(options.out, overwrite=options.overwrite) as root:
        directories: dict[Format, Path] = {}
        for name, fmt_plan in plan.formats.items():
            directory = root / name if len(plan.formats) > 1 else root
            directories[name] = directory
            mode = (
                report.mode
                if (report is not None and name is Format.reasoning)
                else TemplateMode.content
            )
            outputs[name] = _write_one(
                fmt_plan,
                directory=directory,
                engine=engine,
                options=options,
                ctx=ctx.model_copy(update={"mode": mode}),
                renderer=renderer if name is Format.reasoning else None,
                report=report if name is Format.reasoning else None,
                exact_tokens=exact_tokens,
                progress=progress,
            )
        manifest = _manifest(options, plan, outputs, runs, unfinished, report)
        for name, directory in directories.items():
            own = manifest.model_copy(update={"outputs": {name: outputs[name]}})
            (directory / "README.md").write_text(render_card(own, outputs[name]), encoding="utf-8")
            (directory / MANIFEST).write_text(
                own.model_dump_json(indent=2) + "\n", encoding="utf-8"
            )
        if len(directories) > 1:
            (root / MANIFEST).write_text(
                manifest.model_dump_json(indent=2) + "\n", encoding="utf-8"
            )
    return manifest


def load_data(
    engine: Engine,
    *,
    selection: Selection,
    ctx: RecordContext,
    counter: TokenCounter | None,
    chains: bool,
    progress: Progress | None = None,
) -> tuple[LoadedData, dict[str, int]]:
    with engine.connect() as conn:
        total = count_generations(conn, selection=selection)
        if total == 0:
            raise UserError(f"no finished generations match the selection ({selection.describe()})")
        unfinished = unfinished_jobs(conn, selection=selection)
        questions = {q.id: q for q in stream_questions(conn, selection=selection)}
        rows: list[SampleRow] = []
        for i, sample in enumerate(stream_samples(conn, selection=selection), 1):
            rows.append(sample)
            if progress and i % PROGRESS_EVERY == 0:
                progress("reading generations", i, total)
        if progress:
            progress("reading generations", len(rows), total)
    samples = select_in_runs(rows, runs=selection.runs)
    if not samples:
        raise UserError(f"no finished generations match the selection ({selection.describe()})")
    data = LoadedData(
        questions=questions, samples=samples, chains={}, exact_tokens=counter is not None
    )
    if chains:
        data.chains = _read_chains(engine, selection, data, ctx, counter, progress)
    return data, unfinished


def _read_chains(
    engine: Engine,
    selection: Selection,
    data: LoadedData,
    ctx: RecordContext,
    counter: TokenCounter | None,
    progress: Progress | None,
) -> dict[int, ChainInfo]:
    """Clean (and count) every chain that could be exported; keep facts, drop the text."""
    wanted = {
        s.generation_id: s
        for s in data.samples
        if s.outcome is Outcome.correct
        and s.finish_reason == "stop"
        and s.closed
        and sorted(s.choice_order) == list(range(len(data.questions[s.question_id].choices)))
    }
    infos: dict[int, ChainInfo] = {}
    pending: list[tuple[int, CleanChain, str]] = []

    def flush() -> None:
        if counter is not None and pending:
            chain_counts = counter.count([c.text for _, c, _ in pending])
            content_counts = counter.count([content for _, _, content in pending])
            for (gid, _, _), n_chain, n_content in zip(
                pending, chain_counts, content_counts, strict=True
            ):
                infos[gid].reasoning_tokens, infos[gid].content_tokens = n_chain, n_content
        pending.clear()

    done = 0
    with engine.connect() as conn:
        for gid, text in stream_chains(conn, selection=selection):
            sample = wanted.get(gid)
            if sample is None:
                continue
            gold = gold_letter(sample.choice_order, data.questions[sample.question_id].answer_index)
            cleaned = clean_chain(text, gold=gold, ctx=ctx)
            if not isinstance(cleaned, CleanChain):
                infos[gid] = ChainInfo(drop=cleaned)
            else:
                infos[gid] = ChainInfo(
                    drop=None,
                    chars=len(cleaned.text),
                    stray_markers=cleaned.stray_markers,
                    trailing_lines=cleaned.trailing_lines,
                )
                if counter is not None:
                    pending.append(
                        (gid, cleaned, reasoning_content(cleaned.text, letter=gold, ctx=ctx))
                    )
                    if len(pending) >= TOKENIZE_BATCH:
                        flush()
            done += 1
            if progress and done % PROGRESS_EVERY == 0:
                progress("cleaning chains", done, len(wanted))
    flush()
    if progress:
        progress("cleaning chains", done, len(wanted))
    return infos


def _check_student_template(
    engine: Engine, plan: FormatPlan, template: ChatTemplate, ctx: RecordContext
) -> TemplateReport:
    sample = (plan.train or plan.validation)[0]
    assert sample.generation_id is not None
    with engine.connect() as conn:
        text = fetch_chains(conn, generation_ids=[sample.generation_id]).get(sample.generation_id)
    cleaned = clean_chain(text, gold=sample.letter, ctx=ctx)
    if not isinstance(cleaned, CleanChain):
        raise UserError("the database changed during export; run it again")
    user = user_prompt(sample.question.question, sample.question.choices, sample.order, ctx=ctx)
    return check_template(template, user=user, chain=cleaned.text, letter=sample.letter, ctx=ctx)


def _write_one(
    plan: FormatPlan,
    *,
    directory: Path,
    engine: Engine,
    options: ExportOptions,
    ctx: RecordContext,
    renderer: TextRenderer | None,
    report: TemplateReport | None,
    exact_tokens: bool,
    progress: Progress | None,
) -> FormatManifest:
    builder = RecordBuilder(
        plan.fmt, engine=engine, ctx=ctx, stages=options.stages is not None, renderer=renderer
    )
    stats = RecordStats(
        length_unit="tokens of the chain (--tokenizer)"
        if exact_tokens
        else "completion tokens, teacher-reported (chain + answer)"
    )
    write_format(
        plan, directory=directory, kind=options.to, builder=builder, stats=stats, progress=progress
    )
    files = {
        path: digest
        for path, digest in file_hashes(directory).items()
        if Path(path).name not in NOT_DATA
    }
    plots = write_plots(stats, directory)
    split_stats = stats.split_stats()
    return FormatManifest(
        format=plan.fmt,
        records=sum(s.records for s in split_stats.values()),
        columns=list(builder.schema.names),
        funnel=plan.funnel,
        fixes=plan.fixes,
        splits=split_stats,
        difficulty_histogram=stats.histogram(),
        lengths=stats.length_stats(),
        balance=plan.balance,
        template=report,
        files=files,
        plots=plots,
    )


def _manifest(
    options: ExportOptions,
    plan: ExportPlan,
    outputs: dict[Format, FormatManifest],
    runs: list[RunInfo],
    unfinished: dict[str, int],
    report: TemplateReport | None,
) -> ExportManifest:
    warnings = list(plan.warnings)
    if report is not None and report.mode is TemplateMode.text:
        warnings.append(f"{report.template}: {report.detail}")
    return ExportManifest(
        distill_version=_distill_version(),
        format=options.format,
        to=options.to,
        options=options.model_dump(mode="json", exclude={"out", "overwrite"}),
        seed=options.seed,
        teacher_models=plan.teacher_models,
        prompt_versions=plan.prompt_versions,
        runs=runs,
        unfinished_jobs=unfinished,
        superseded=plan.superseded,
        question_funnel=plan.question_funnel,
        questions={str(s): n for s, n in plan.questions.items()},
        referring_options=plan.referring,
        outputs=dict(outputs),
        warnings=warnings,
    )


def _nothing_left(plan: FormatPlan) -> str:
    reasons = [f"{s.removed} {s.step}" for s in plan.funnel[1:] if s.removed]
    start = plan.funnel[0]
    return f"nothing to export in the {plan.fmt} format: of {start.remaining} {start.step}, " + (
        "; ".join(reasons) if reasons else "none survived"
    )


__all__ = ["export_dataset", "load_data"]
