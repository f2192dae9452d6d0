"""Start a worker process: `distill worker` calls `run`.

A worker's terminal shows what a person watching a run needs: a start line, one summary line
per interval from the runner (what finished, what is in flight, tokens/s), and warnings and
errors; per-job lines only at --loglevel DEBUG."""

from __future__ import annotations

import logging
import warnings

from distill.config import Settings
from workers.app import make_app

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that write a line (or three) per job at INFO: Celery's "received" and "succeeded",
# httpx's request line (which would also print a URL's credentials).
PER_JOB_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "httpx", "httpcore")


def run(settings: Settings, *, loglevel: str = "INFO", hostname: str | None = None) -> None:
    level = logging.getLevelName(loglevel.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {loglevel!r}")
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
    app = make_app(settings)
    argv = [
        "--quiet",  # no banner: distill logs what it runs with instead
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
    logging.getLogger("distill.worker").info(
        "worker for %s: %d requests in flight; queues %s",
        settings.teacher_model,
        settings.concurrency,
        ", ".join(q.name for q in app.conf.task_queues),
    )
    app.worker_main(argv)
