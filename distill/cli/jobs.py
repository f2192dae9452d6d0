"""`distill enqueue | worker | status | retry`: the job queue from the command line."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from distill import redact
from distill.config import Settings, get_settings
from distill.db import session_scope
from distill.errors import UserError
from distill.jobs import enqueue as enqueue_mod
from distill.jobs import publish, requeue
from distill.jobs import status as status_mod
from distill.jobs.lease import stuck_job_ids
from distill.teacher.budget import Budget, read_budget
from schemas.status import StatusReport

err = Console(stderr=True)


def enqueue(
    n: Annotated[
        int,
        typer.Option("--n", help="How many questions to ask (each --samples times)."),
    ],
    samples: Annotated[
        int,
        typer.Option(
            "--samples",
            "-k",
            help="Samples per question (difficulty = 1 - pass rate over them).",
        ),
    ] = 1,
    subject: Annotated[
        list[str] | None,
        typer.Option("--subject", help="Only these subjects (repeatable)."),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(help="Token budget per generation (default: DISTILL_MAX_TOKENS)."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed for question choice and option order (default: DISTILL_SEED)."),
    ] = None,
    shuffle: Annotated[
        bool,
        typer.Option(
            "--shuffle/--no-shuffle",
            help="Permute options per job for balanced gold letters; --no-shuffle keeps every "
            "question's own order for this run.",
        ),
    ] = True,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Show progress until every job of the run is final."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Create jobs for N questions lacking samples of this teacher, then publish them.

    Re-running never duplicates work: a question gets only the samples it lacks for the
    configured teacher model and prompt version, so a larger --samples tops up questions
    already asked (they come first). Options that refer to other options ("Both A and B",
    "All of the above") keep what they name: see the docs on option order.
    The budget is checked against the teacher's context length when the teacher answers.

    Example: distill enqueue --n 3000 --samples 4 --wait
    """
    settings = get_settings()
    with session_scope() as session:
        selection = enqueue_mod.select_run(
            session,
            n=n,
            samples=samples,
            teacher_model=settings.teacher_model,
            params={"temperature": settings.temperature, "top_p": settings.top_p},
            max_tokens=max_tokens or settings.max_tokens,
            subjects=subject or [],
            seed=settings.seed if seed is None else seed,
            shuffle=shuffle,
        )
        # Before anything is written: a budget the teacher cannot serve makes no run.
        _check_budget(settings, selection.max_tokens, selection.longest_prompt)
        plan = enqueue_mod.insert_run(session, selection)
        try:
            publish.commit_and_publish(session, plan.job_ids, broker_url=settings.broker_url)
        except UserError as exc:
            raise UserError(f"run {plan.run_id}: {exc}") from exc
    summary = {
        "run_id": plan.run_id,
        "questions": plan.questions,
        "jobs": len(plan.job_ids),
        "requested": plan.requested,
        "available": plan.available,
        "topped_up": plan.topped_up,
        "shuffle": shuffle,
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(_enqueued_line(plan, samples))
    if wait:
        _wait_for(plan.run_id)


def _enqueued_line(plan: enqueue_mod.EnqueuePlan, samples: int) -> str:
    left = "unasked question(s)" if not plan.topped_up else "question(s) lacking samples"
    short = (
        f" (only {plan.available} {left} left; enqueued them all)"
        if plan.questions < plan.requested
        else ""
    )
    topped = (
        f"; {plan.topped_up} of them topped up to {samples} sample(s)" if plan.topped_up else ""
    )
    return (
        f"run {plan.run_id}: enqueued {len(plan.job_ids)} job(s) for {plan.questions} "
        f"question(s) × {samples} sample(s){topped}{short}"
    )


def _check_budget(settings: Settings, max_tokens: int, longest: list[dict[str, str]]) -> None:
    """Refuse a budget that no prompt leaves room for in the teacher's context, and warn when
    the run's longest prompt cuts it short. A teacher that does not answer is not an error:
    enqueueing ahead of the server is normal (vLLM takes minutes to load a 32B model)."""
    from distill.teacher.client import TeacherError

    try:
        budget, tokens = asyncio.run(_read_budget(settings, max_tokens, longest))
    except TeacherError:
        err.print(
            f"warning: teacher not reachable at {redact.url(settings.teacher_url)}; "
            f"--max-tokens {max_tokens} not checked against its context length",
            highlight=False,
            soft_wrap=True,
        )
        return
    refusal = budget.refusal()
    if refusal is not None:
        raise UserError(refusal)
    warning = budget.long_prompt_warning(tokens) if tokens is not None else None
    if warning is not None:
        err.print(f"warning: {warning}", highlight=False, soft_wrap=True)


async def _read_budget(
    settings: Settings, max_tokens: int, longest: list[dict[str, str]]
) -> tuple[Budget, int | None]:
    from distill.teacher.client import OpenAITeacher

    quick = settings.model_copy(update={"request_timeout": 10.0, "request_retries": 1})
    async with OpenAITeacher.from_settings(quick) as teacher:
        budget = await read_budget(teacher, max_tokens=max_tokens)
        tokens = await teacher.prompt_tokens(longest) if budget.context is not None else None
        return budget, tokens


def _wait_for(run_id: int, poll: float = 2.0) -> None:
    """A progress bar whose rates and ETA are `distill status --run`'s, not rich's own."""
    columns = (
        TextColumn("[bold]run {task.fields[run]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("done {task.fields[done]} failed {task.fields[failed]}"),
        TextColumn("{task.fields[tps]:.0f} tok/s {task.fields[jpm]:.1f} jobs/min"),
        TextColumn("ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=err) as progress:
        task = progress.add_task(
            "jobs", total=None, run=run_id, done=0, failed=0, tps=0.0, jpm=0.0, eta="n/a"
        )
        while True:
            with session_scope() as session:
                report = status_mod.collect(session, run_id=run_id)
            final = report.jobs["done"] + report.jobs["failed"]
            progress.update(
                task,
                total=report.total,
                completed=final,
                done=report.jobs["done"],
                failed=report.jobs["failed"],
                tps=report.completion_tokens_per_s,
                jpm=report.jobs_per_min,
                eta=_eta(report),
            )
            if report.remaining == 0:
                break
            time.sleep(poll)
    err.print(_summary_line(report), soft_wrap=True, highlight=False)


def _eta(r: StatusReport) -> str:
    return "n/a" if r.eta_s is None else time.strftime("%H:%M:%S", time.gmtime(r.eta_s))


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            help="Teacher requests in flight (default: DISTILL_CONCURRENCY).",
        ),
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    hostname: Annotated[str | None, typer.Option(help="Worker name (default: celery's).")] = None,
) -> None:
    """Start a worker that keeps CONCURRENCY teacher requests in flight from one process.

    Example: DISTILL_TEACHER_URL=http://gpu-host:8000/v1 distill worker --concurrency 128
    """
    settings = get_settings()
    if concurrency:
        # The runner's semaphore and Celery's pool agree on the number of requests in flight.
        settings = settings.model_copy(update={"concurrency": concurrency})
    from workers.app import make_app  # the worker side imports distill, not the other way round

    app = make_app(settings)
    argv = [
        "worker",
        "--pool",
        "threads",
        "--concurrency",
        str(settings.concurrency),
        "--loglevel",
        loglevel,
    ]
    if hostname:
        argv += ["--hostname", hostname]
    app.worker_main(argv)


def status(
    run: Annotated[int | None, typer.Option("--run", help="Only this run.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh every 2 seconds until Ctrl-C.")
    ] = False,
    window: Annotated[float, typer.Option(help="Seconds of recent history the rates use.")] = 300.0,
) -> None:
    """Counts by job status and outcome, accuracy so far, tokens/s, jobs/min and ETA.

    Example: distill status --json | jq .outcomes
    """

    def snapshot() -> StatusReport:
        with session_scope() as session:
            return status_mod.collect(session, run_id=run, window_s=window)

    if as_json:
        typer.echo(snapshot().model_dump_json())
        return
    if not watch:
        Console().print(_table(snapshot()))
        return
    with Live(_table(snapshot()), console=Console(), refresh_per_second=1) as live:
        try:
            while True:
                time.sleep(2)
                live.update(_table(snapshot()))
        except KeyboardInterrupt:
            pass


def _summary_line(r: StatusReport) -> str:
    acc = f"{r.accuracy:.1%}" if r.accuracy is not None else "n/a"
    outcomes = ", ".join(f"{k} {v}" for k, v in r.outcomes.items() if v)
    done, failed = r.jobs["done"], r.jobs["failed"]
    rates = (
        f"; {r.completion_tokens_per_s:.0f} tok/s, {r.jobs_per_min:.1f} jobs/min ({r.rate_note()})"
        if r.rate_basis != "idle"
        else ""
    )
    return f"{done} done, {failed} failed; accuracy {acc}; {outcomes or 'no generations'}{rates}"


def _table(r: StatusReport) -> Table:
    table = Table(
        title=f"distill status{'' if r.run_id is None else f' — run {r.run_id}'}",
        show_header=False,
    )
    for name, count in r.jobs.items():
        table.add_row(f"jobs {name}", str(count))
    if len(r.queued_by_route) > 1:
        # Several teacher models or prompt versions: each waits for workers of its own.
        for route, count in r.queued_by_route.items():
            table.add_row(f"  queued for {route}", str(count))
    for name, count in r.outcomes.items():
        table.add_row(f"outcome {name}", str(count))
    table.add_row("accuracy", f"{r.accuracy:.1%}" if r.accuracy is not None else "n/a")
    if r.rate_basis == "idle":
        table.add_row("throughput", "idle (nothing queued or running)")
    else:
        note = f" ({r.rate_note()})"
        table.add_row("completion tokens/s", f"{r.completion_tokens_per_s:.1f}{note}")
        table.add_row("jobs/min", f"{r.jobs_per_min:.1f}{note}")
    table.add_row("ETA", _eta(r) if r.remaining else "-")
    fixed = r.referring_questions.get("fixed", 0)
    anchored = r.referring_questions.get("anchored", 0)
    if fixed or anchored:
        table.add_row(
            "referring options",
            f"{fixed} question(s) in original order, {anchored} with '… of the above' in place",
        )
    return table


def retry(
    failed: Annotated[
        bool,
        typer.Option("--failed", help="Re-queue failed jobs with a fresh attempts budget."),
    ] = False,
    truncated: Annotated[
        bool,
        typer.Option(
            "--truncated",
            help="Re-ask truncated generations with a bigger --max-tokens.",
        ),
    ] = False,
    max_tokens: Annotated[
        int | None,
        typer.Option(help="Budget for --truncated; must exceed the budget that truncated."),
    ] = None,
    stuck: Annotated[
        bool,
        typer.Option(
            "--stuck",
            help="Re-publish queued jobs and jobs whose worker died (lease expired).",
        ),
    ] = False,
    run: Annotated[int | None, typer.Option("--run", help="Only this run.")] = None,
) -> None:
    """Re-queue failed jobs, re-ask truncated generations with more tokens, re-publish stuck jobs.

    Example: distill retry --truncated --max-tokens 16384
    """
    if not (failed or truncated or stuck):
        raise UserError("say what to retry: --failed, --truncated --max-tokens M, or --stuck")
    if truncated and max_tokens is None:
        raise UserError(
            "--truncated needs --max-tokens M (a bigger budget than the one that truncated)"
        )
    if max_tokens is not None and not truncated:
        raise UserError("--max-tokens only applies with --truncated")
    settings = get_settings()
    to_publish: list[int] = []
    report: list[str] = []
    with session_scope() as session:
        if failed:
            ids = requeue.requeue_failed(session, run_id=run)
            report.append(f"re-queued {len(ids)} failed job(s)")
            to_publish += ids
        if truncated:
            assert max_tokens is not None
            result = requeue.retry_truncated(session, max_tokens=max_tokens, run_id=run)
            skipped = (
                f"; {result.skipped_budget} skipped (budget already ≥ {max_tokens})"
                if result.skipped_budget
                else ""
            )
            where = f" in run {result.run_id}" if result.run_id is not None else ""
            report.append(
                f"created {len(result.job_ids)} job(s) for truncated generations "
                f"with max_tokens={max_tokens}{where}{skipped}"
            )
            to_publish += result.job_ids
        if stuck:
            ids = stuck_job_ids(session)
            report.append(f"re-publishing {len(ids)} queued or lease-expired job(s)")
            to_publish += ids
        # Reported once it is committed and published, never before.
        publish.commit_and_publish(session, sorted(set(to_publish)), broker_url=settings.broker_url)
    for line in report:
        typer.echo(line)
