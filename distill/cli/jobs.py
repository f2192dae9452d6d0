"""`distill enqueue | worker | status | retry`: the job queue from the command line.

Commands import what they use inside their bodies, so `distill --help` loads none of it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from distill.errors import UserError

if TYPE_CHECKING:
    from distill.jobs.enqueue import EnqueuePlan


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
        typer.Option("--subject", metavar="S", help="Only these subjects (repeatable)."),
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
    from distill.config import get_settings
    from distill.db import session_scope
    from distill.jobs import enqueue as enqueue_mod
    from distill.jobs import publish
    from distill.jobs.embedded import resolve
    from distill.teacher.budget import check_enqueue_budget

    settings = resolve(get_settings())
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
        for warning in check_enqueue_budget(
            settings, max_tokens=selection.max_tokens, longest_prompt=selection.longest_prompt
        ):
            typer.echo(f"warning: {warning}", err=True)
        plan = enqueue_mod.insert_run(session, selection)
        try:
            published = publish.commit_and_publish(
                session,
                plan.job_ids,
                broker_url=settings.broker_url,
                per_message=settings.jobs_per_message,
                backlog=settings.broker_backlog,
            )
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
        "sent": published.jobs,
        "deferred": published.deferred,
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(_enqueued_line(plan, samples))
        if published.deferred:
            typer.echo(
                f"sent {published.jobs} to the broker; the other {published.deferred} wait in "
                f"the database and workers send them as the queue drains (at most "
                f"{settings.broker_backlog} waiting: DISTILL_BROKER_BACKLOG)"
            )
    if wait:
        from distill.cli.progress import wait_for

        wait_for(plan.run_id)


def _enqueued_line(plan: EnqueuePlan, samples: int) -> str:
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
    from distill.config import get_settings
    from distill.jobs.embedded import resolve

    settings = resolve(get_settings())
    if concurrency:
        # The runner's semaphore and Celery's pool agree on the number of requests in flight.
        settings = settings.model_copy(update={"concurrency": concurrency})
    from workers.main import run  # the worker side imports distill, not the other way round

    run(settings, loglevel=loglevel, hostname=hostname)


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

    from distill.cli.progress import show_status

    show_status(run_id=run, window_s=window, as_json=as_json, watch=watch)


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
    from distill.config import get_settings
    from distill.db import session_scope
    from distill.jobs import publish, requeue
    from distill.jobs.embedded import resolve
    from distill.jobs.lease import stuck_job_ids

    settings = resolve(get_settings())
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
        publish.commit_and_publish(
            session,
            sorted(set(to_publish)),
            broker_url=settings.broker_url,
            per_message=settings.jobs_per_message,
            backlog=settings.broker_backlog,
        )
    for line in report:
        typer.echo(line)


def reconcile(
    as_json: Annotated[bool, typer.Option("--json", help="Print what was done as JSON.")] = False,
) -> None:
    """Put back what dead workers and a lost broker left: expired leases to the queue (or
    failed after DISTILL_MAX_ATTEMPTS), the messages of queued jobs the broker never got or
    lost, and those a dead worker took and never claimed. Every worker does this on its own
    every DISTILL_RECONCILE_SECONDS; this runs it once, e.g. when no worker is running.

    Example: distill reconcile
    """
    from dataclasses import asdict

    from distill.config import get_settings
    from distill.db import get_engine
    from distill.jobs.embedded import resolve
    from distill.jobs.reconcile import reconcile as run_reconcile

    settings = resolve(get_settings())
    try:
        done = run_reconcile(
            get_engine(settings.database_url),
            broker_url=settings.broker_url,
            max_attempts=settings.max_attempts,
            lease_seconds=settings.lease,
            per_message=settings.jobs_per_message,
            backlog=settings.broker_backlog,
        )
    except UserError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("sqlalchemy"):
            raise
        from distill import redact

        raise UserError(
            f"the broker at {redact.url(settings.broker_url)} does not answer "
            f"({type(exc).__name__}); nothing was sent"
        ) from None
    if as_json:
        typer.echo(json.dumps(asdict(done)))
        return
    lost = "; the broker had lost its messages" if done.broker_lost else ""
    typer.echo(
        f"{done.requeued} expired lease(s) back in the queue, {done.failed} failed after "
        f"{settings.max_attempts} attempts, {done.published} message(s) sent, "
        f"{done.given_back} given back from dead workers{lost}"
    )
