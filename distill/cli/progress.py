"""What the job-queue commands show: `distill status` as a table or JSON, and the progress bar
of `enqueue --wait`. Both read distill.jobs.status.collect, so they show the same numbers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from distill.db import session_scope
from distill.jobs import status as status_mod
from schemas.status import StatusReport, WorkerReport

if TYPE_CHECKING:
    from rich.console import RenderableType

err = Console(stderr=True)


def snapshot(*, run_id: int | None, window_s: float = 300.0) -> StatusReport:
    from distill.config import get_settings

    with session_scope() as session:
        return status_mod.collect(
            session, run_id=run_id, window_s=window_s, heartbeat_s=get_settings().heartbeat
        )


def show_status(*, run_id: int | None, window_s: float, as_json: bool, watch: bool) -> None:
    if as_json:
        typer.echo(snapshot(run_id=run_id, window_s=window_s).model_dump_json())
        return
    console = Console()
    if not watch:
        console.print(status_table(snapshot(run_id=run_id, window_s=window_s)))
        return
    from rich.live import Live

    table: RenderableType = status_table(snapshot(run_id=run_id, window_s=window_s))
    with Live(table, console=console, refresh_per_second=1) as live:
        try:
            while True:
                time.sleep(2)
                live.update(status_table(snapshot(run_id=run_id, window_s=window_s)))
        except KeyboardInterrupt:
            pass


def wait_for(run_id: int, poll: float = 2.0) -> None:
    """A progress bar whose rates and ETA are `distill status --run`'s, not rich's own."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

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
            report = snapshot(run_id=run_id)
            final = report.jobs["done"] + report.jobs["failed"]
            progress.update(
                task,
                total=report.total,
                completed=final,
                done=report.jobs["done"],
                failed=report.jobs["failed"],
                tps=report.completion_tokens_per_s,
                jpm=report.jobs_per_min,
                eta=eta(report),
            )
            if report.remaining == 0:
                break
            time.sleep(poll)
    err.print(summary_line(report), soft_wrap=True, highlight=False)


def eta(r: StatusReport) -> str:
    return "n/a" if r.eta_s is None else time.strftime("%H:%M:%S", time.gmtime(r.eta_s))


def summary_line(r: StatusReport) -> str:
    acc = f"{r.accuracy:.1%}" if r.accuracy is not None else "n/a"
    outcomes = ", ".join(f"{k} {v}" for k, v in r.outcomes.items() if v)
    done, failed = r.jobs["done"], r.jobs["failed"]
    rates = (
        f"; {r.completion_tokens_per_s:.0f} tok/s, {r.jobs_per_min:.1f} jobs/min ({r.rate_note()})"
        if r.rate_basis != "idle"
        else ""
    )
    return f"{done} done, {failed} failed; accuracy {acc}; {outcomes or 'no generations'}{rates}"


def _worker_line(w: WorkerReport) -> str:
    if w.state == "paused" and w.paused_since is not None:
        return (
            f"paused since {w.paused_since:%Y-%m-%d %H:%M:%S} UTC (teacher unavailable: "
            f"{w.pause_reason}); {w.in_flight} waiting"
        )
    if w.state == "silent":
        return f"silent: no heartbeat for {w.last_seen_s:.0f}s (killed or frozen?)"
    if w.state == "stopped":
        return f"stopped {w.last_seen_s:.0f}s ago"
    return f"running, {w.in_flight} in flight ({w.teacher_model})"


def status_table(r: StatusReport) -> Table:
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
    table.add_row("ETA", eta(r) if r.remaining else "-")
    if r.stale_leases:
        table.add_row(
            "stale leases",
            f"{r.stale_leases} running job(s) whose worker stopped renewing: "
            "the reconciler requeues them",
        )
    for w in r.workers:
        table.add_row(f"worker {w.name}", _worker_line(w))
    fixed = r.referring_questions.get("fixed", 0)
    anchored = r.referring_questions.get("anchored", 0)
    if fixed or anchored:
        table.add_row(
            "referring options",
            f"{fixed} question(s) in original order, {anchored} with '… of the above' in place",
        )
    return table
