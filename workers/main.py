"""Start a worker process: `distill worker` calls `run`.

Before it takes a message the worker checks that the database is reachable and at the schema
this code needs, that the broker answers, and that the teacher serves the model; otherwise it
exits with one line (compose restarts it). A worker's terminal shows what a person watching a
run needs: a start line, one summary line per interval from the runner (what finished, what is in
flight, tokens/s), and warnings and errors; per-job lines only at --loglevel DEBUG.

Stopping: the first SIGTERM or Ctrl-C stops taking messages and gives the requests in flight
DISTILL_SHUTDOWN_GRACE seconds; then, or at a second Ctrl-C, the rest are handed back (jobs
queued, uncharged, messages kept) and the process exits."""

from __future__ import annotations

import asyncio
import logging
import warnings

from distill import redact
from distill.config import Settings
from distill.db import get_engine
from distill.errors import UserError
from workers.app import build
from workers.pool import ThreadPool

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that write a line (or three) per job at INFO: Celery's "received" and "succeeded".
PER_JOB_LOGGERS = ("celery.worker.strategy", "celery.app.trace")

log = logging.getLogger("distill.worker")


def check(settings: Settings) -> None:
    """UserError, in one line, unless the database, the broker and the teacher are usable."""
    get_engine(settings.database_url)  # exists, reachable, at the schema this code needs
    _check_broker(settings.broker_url)
    asyncio.run(_check_teacher(settings))


def _check_broker(broker_url: str) -> None:
    from kombu import Connection

    try:
        with Connection(broker_url, connect_timeout=10) as connection:
            connection.ensure_connection(max_retries=2, interval_start=1, interval_step=1)
    except Exception as exc:
        raise UserError(
            f"the broker at {redact.url(broker_url)} does not answer ({type(exc).__name__}); "
            "check DISTILL_BROKER_URL"
        ) from None


async def _check_teacher(settings: Settings) -> None:
    from distill.teacher.client import OpenAITeacher, TeacherError

    quick = settings.model_copy(update={"request_timeout": 15.0, "request_retries": 1})
    try:
        async with OpenAITeacher.from_settings(quick) as teacher:
            served = await teacher.list_models()
    except TeacherError as exc:
        raise UserError(f"the teacher does not answer: {exc}") from None
    if settings.teacher_model not in served:
        raise UserError(
            f"the teacher at {redact.url(settings.teacher_url)} serves "
            f"{', '.join(served) or 'nothing'}, not {settings.teacher_model} "
            "(DISTILL_TEACHER_MODEL)"
        )


def _configure_logging(loglevel: str) -> None:
    level = logging.getLevelName(loglevel.upper())
    if not isinstance(level, int):
        raise UserError(f"unknown log level {loglevel!r}")
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.setLevel(level)
    quiet = max(level, logging.WARNING) if level > logging.DEBUG else level
    for name in PER_JOB_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    # In a container the worker runs as root, which Celery warns about even with JSON-only
    # messages (the warning is about pickle).
    warnings.filterwarnings("ignore", message="You're running the worker with superuser")


def message_threads(settings: Settings) -> int:
    """Celery's pool threads, one per message held (prefetch 1): enough messages for four times
    the requests in flight. A message is acked when its last job is stored, so a message whose
    other jobs are done waits for its slowest, and the next message reaches a freed thread only
    on the Celery consumer's next poll of the broker (up to about a second): with twice the
    requests in flight, real vLLM sat idle between waves (docs/benchmarks.md, runs F, G). The
    runner, not the threads, bounds what is in flight (DISTILL_CONCURRENCY); jobs claimed
    beyond it wait, their leases renewed by the heartbeat."""
    return max(2, -(-4 * settings.concurrency // settings.jobs_per_message))


def run(settings: Settings, *, loglevel: str = "INFO", hostname: str | None = None) -> None:
    _configure_logging(loglevel)
    check(settings)
    app, runners = build(settings)
    ThreadPool.on_terminate_job = runners.hand_back_now
    argv = [
        "--quiet",  # no banner: distill logs what it runs with instead
        "worker",
        "--concurrency",
        str(message_threads(settings)),
        "--loglevel",
        loglevel,
    ]
    if hostname:
        argv += ["--hostname", hostname]
    log.info(
        "worker for %s: %d requests in flight; queues %s",
        settings.teacher_model,
        settings.concurrency,
        ", ".join(q.name for q in app.conf.task_queues),
    )
    app.worker_main(argv)
