"""`distill eval`: evaluate a teacher, a baseline or a student on an exported split, and compare
two evals on their common questions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from distill.errors import UserError

if TYPE_CHECKING:
    from schemas.eval import CompareReport, EvalReport, Interval

HELP = "\n\n".join(
    (
        "Ask an OpenAI-compatible endpoint every question of an exported split and report "
        "accuracy and termination, each with a 95 % Wilson interval.",
        "The answer is read as the grader reads the teacher: in reasoning mode only after the "
        "close marker, so an unclosed think block is no answer. Termination is reported apart: "
        "closed the think block, ended on its own end-of-turn (finish_reason stop), cut at "
        "--max-tokens. Replies are stored in the database as they come; running the same "
        "command again continues an interrupted eval.",
        "Examples:",
        "  distill eval --data data/reasoning --url http://127.0.0.1:8000/v1 --model student",
        "  distill eval --data data/direct --mode direct --model base --budget-seconds 30",
        "  distill eval --compare 1 2",
    )
)


def eval_(
    data: Annotated[
        Path | None, typer.Option(help="A `distill export --out` directory (one format, or both).")
    ] = None,
    split: Annotated[str, typer.Option(help="The split to ask.")] = "validation",
    url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL (default: DISTILL_TEACHER_URL).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Served model name (default: DISTILL_TEACHER_MODEL).")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="Bearer token (default: DISTILL_TEACHER_API_KEY).", show_default=False),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            metavar="reasoning|direct",
            help="How the answer is read: after the think block, or from the whole reply.",
        ),
    ] = "reasoning",
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Completion budget (default: DISTILL_MAX_TOKENS).")
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(min=0.0, max=2.0, help="Sampling temperature (default: DISTILL_TEMPERATURE)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Requests in flight.")
    ] = 64,
    budget_seconds: Annotated[
        float | None,
        typer.Option(min=0.0, help="Per-question time budget: slower replies count as wrong."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the split's first N.")] = None,
    name: Annotated[
        str | None, typer.Option(help="A label for this eval, shown in reports.")
    ] = None,
    compare: Annotated[
        tuple[int, int] | None,
        typer.Option(metavar="A B", help="Compare two stored evals (paired, common questions)."),
    ] = None,
    show: Annotated[int | None, typer.Option(metavar="ID", help="Print a stored eval.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the stored evals.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    from distill.db import session_scope
    from distill.evaluation import report as report_mod

    if mode not in ("reasoning", "direct"):
        raise UserError(f"--mode {mode!r}: say reasoning or direct")
    if compare is not None:
        with session_scope() as session:
            result = report_mod.compare(
                report_mod.load(session, compare[0]), report_mod.load(session, compare[1])
            )
        _print(result, as_json=as_json)
        return
    if show is not None:
        with session_scope() as session:
            shown = report_mod.report(*report_mod.load(session, show))
        _print(shown, as_json=as_json)
        return
    if list_:
        _list()
        return
    if data is None:
        raise UserError("say what to evaluate on: --data DIR (or --compare A B, --show ID, --list)")
    done = _run(
        data=data,
        split=split,
        url=url,
        model=model,
        api_key=api_key,
        mode=mode,
        max_tokens=max_tokens,
        temperature=temperature,
        concurrency=concurrency,
        budget_seconds=budget_seconds,
        limit=limit,
        name=name,
    )
    _print(done, as_json=as_json)
    if not done.finished:
        raise typer.Exit(1)


def _run(
    *,
    data: Path,
    split: str,
    url: str | None,
    model: str | None,
    api_key: str | None,
    mode: str,
    max_tokens: int | None,
    temperature: float | None,
    concurrency: int,
    budget_seconds: float | None,
    limit: int | None,
    name: str | None,
) -> EvalReport:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )
    from sqlalchemy import select

    from distill import redact
    from distill.config import get_settings
    from distill.db import get_engine, session_scope
    from distill.evaluation import data as data_mod
    from distill.evaluation import report as report_mod
    from distill.evaluation.run import Target, ask_all, pending
    from distill.models import EvalRun, utcnow

    settings = get_settings()
    questions = data_mod.load_split(data, split, mode=mode, limit=limit)
    target = Target(
        url=url or settings.teacher_url,
        model=model or settings.teacher_model,
        api_key=api_key or settings.teacher_api_key,
        max_tokens=max_tokens or settings.max_tokens,
        temperature=settings.temperature if temperature is None else temperature,
        top_p=settings.top_p,
        concurrency=concurrency,
        timeout=settings.request_timeout,
        retries=settings.request_retries,
    )
    params = {
        "max_tokens": target.max_tokens,
        "temperature": target.temperature,
        "top_p": target.top_p,
        "limit": limit,
    }
    fingerprint = data_mod.fingerprint(questions)
    engine = get_engine(settings.database_url)
    err = Console(stderr=True)
    with session_scope(engine) as session:
        # The same eval, interrupted: continue it rather than start over.
        existing = [
            run
            for run in session.scalars(
                select(EvalRun).where(
                    EvalRun.fingerprint == fingerprint,
                    EvalRun.finished_at.is_(None),
                    EvalRun.url == redact.url(target.url),
                    EvalRun.model == target.model,
                    EvalRun.mode == mode,
                )
            )
            if run.params == params and run.budget_seconds == budget_seconds
        ]
        if existing:
            run = existing[-1]
        else:
            run = EvalRun(
                name=name,
                url=redact.url(target.url),
                model=target.model,
                data=str(data),
                split=split,
                mode=mode,
                fingerprint=fingerprint,
                params=params,
                budget_seconds=budget_seconds,
                questions=len(questions),
            )
            session.add(run)
            session.flush()
        session.expunge(run)
    todo = pending(engine, run, questions)
    if existing:
        err.print(
            f"eval {run.id}: continuing, {len(questions) - len(todo)} of {len(questions)} "
            "already answered",
            highlight=False,
        )
    columns = (
        TextColumn(f"[bold]eval {run.id}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err) as progress:
        task = progress.add_task("eval", total=len(questions), completed=len(questions) - len(todo))
        failed = asyncio.run(
            ask_all(engine, run, todo, target, on_reply=lambda n: progress.advance(task, n))
        )
    if failed:
        err.print(
            f"warning: {failed} request(s) failed after their retries; run the same command to "
            "ask them again",
            highlight=False,
        )
    if not failed:
        # Every question asked now has its reply (or refusal) stored: the eval is complete.
        with session_scope(engine) as session:
            stored = session.get(EvalRun, run.id)
            assert stored is not None
            stored.finished_at = stored.finished_at or utcnow()
    with session_scope(engine) as session:
        return report_mod.report(*report_mod.load(session, run.id))


def _list() -> None:
    from rich.console import Console
    from rich.table import Table
    from sqlalchemy import func, select

    from distill.db import session_scope
    from distill.models import EvalItem, EvalRun

    table = Table("id", "name", "model", "split", "mode", "answered", "finished")
    with session_scope() as session:
        rows = session.execute(
            select(EvalRun, func.count(EvalItem.id))
            .outerjoin(EvalItem)
            .group_by(EvalRun.id)
            .order_by(EvalRun.id)
        ).all()
        for run, answered in rows:
            table.add_row(
                str(run.id),
                run.name or "",
                run.model,
                f"{run.split} of {run.data}",
                run.mode,
                f"{answered}/{run.questions}",
                "yes" if run.finished_at else "no",
            )
    Console().print(table)


def _print(result: EvalReport | CompareReport, *, as_json: bool) -> None:
    from rich.console import Console

    from schemas.eval import CompareReport

    if as_json:
        typer.echo(result.model_dump_json())
        return
    console = Console()
    if isinstance(result, CompareReport):
        _print_compare(console, result)
    else:
        _print_report(console, result)
    for warning in result.warnings:
        Console(stderr=True).print(f"warning: {warning}", highlight=False, soft_wrap=True)


def share(interval: Interval | None, *, counts: bool = True) -> str:
    if interval is None:
        return "-"
    if interval.value is None:
        return "n/a (0 questions)"
    text = f"{interval.value:6.1%}  [{interval.low:.1%}, {interval.high:.1%}]"
    return f"{text}  ({interval.k}/{interval.n})" if counts else text


def _print_report(console: object, r: EvalReport) -> None:
    from rich.console import Console
    from rich.table import Table

    assert isinstance(console, Console)
    label = f"{r.name} ({r.model})" if r.name else r.model
    table = Table(title=f"eval {r.eval_id}: {label} on {r.split} of {r.data} ({r.mode})")
    table.add_column("metric")
    table.add_column("share  [95 % Wilson]  (k/n)")
    table.add_row("accuracy", share(r.accuracy))
    if r.closed is not None:
        table.add_row("closed the think block", share(r.closed))
    table.add_row("ended itself (finish stop)", share(r.stopped))
    table.add_row("cut at max_tokens", share(r.cut))
    table.add_row("terminated (closed, then stop)", share(r.terminated))
    table.add_row("no answer", share(r.no_answer))
    if r.over_budget is not None:
        table.add_row(f"over {r.budget_seconds:g} s (counted wrong)", share(r.over_budget))
    tokens, latency = r.completion_tokens, r.latency_s
    table.add_row(
        "completion tokens p50/p95/max",
        " / ".join("-" if v is None else f"{v:.0f}" for v in (tokens.p50, tokens.p95, tokens.max)),
    )
    table.add_row(
        "latency s p50/p95/max",
        " / ".join(
            "-" if v is None else f"{v:.2f}" for v in (latency.p50, latency.p95, latency.max)
        ),
    )
    console.print(table)
    subjects = Table(title="accuracy per subject")
    subjects.add_column("subject")
    subjects.add_column("accuracy  [95 % Wilson]  (k/n)")
    for subject, interval in r.per_subject.items():
        subjects.add_row(subject, share(interval))
    console.print(subjects)


def _print_compare(console: object, r: CompareReport) -> None:
    from rich.console import Console
    from rich.table import Table

    assert isinstance(console, Console)
    table = Table(
        title=f"eval {r.a} ({r.a_label}) vs eval {r.b} ({r.b_label}) on {r.common} common questions"
    )
    for column in ("metric", "A [95 %]", "B [95 %]", "B - A", "only A/B", "McNemar p"):
        table.add_column(column)
    for metric, test in (("accuracy", r.accuracy), ("terminated", r.terminated)):
        table.add_row(
            metric,
            share(test.a, counts=False),
            share(test.b, counts=False),
            f"{test.delta:+.1%}",
            f"{test.only_a} / {test.only_b}",
            f"{test.p_value:.3g}",
        )
    console.print(table)
    subjects = Table(title="accuracy per subject")
    for column in ("subject", "n", "A", "B", "B - A"):
        subjects.add_column(column)
    for d in r.per_subject:
        subjects.add_row(d.subject, str(d.n), f"{d.a:.1%}", f"{d.b:.1%}", f"{d.delta:+.1%}")
    console.print(subjects)
