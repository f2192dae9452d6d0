"""Thin tasks: take a job id, hand it to the process's Runner, act on the outcome."""

from __future__ import annotations

import logging
import threading

from celery import Task
from celery.signals import worker_shutdown

from distill.config import get_settings
from distill.jobs.publish import TASK_NAME
from distill.jobs.runner import Runner
from workers.app import app

log = logging.getLogger(__name__)

_runner: Runner | None = None
_lock = threading.Lock()


def get_runner() -> Runner:
    global _runner
    with _lock:
        if _runner is None:
            _runner = Runner(settings=get_settings())
        return _runner


@worker_shutdown.connect
def _close_runner(**_: object) -> None:
    if _runner is not None:
        _runner.close()


@app.task(name=TASK_NAME, bind=True, max_retries=None)
def run_job(self: Task[[int], str], job_id: int) -> str:
    """Run one job. Safe to receive twice or after the job finished: the claim decides."""
    outcome = get_runner().run(job_id)
    if outcome.action in ("requeue", "retry_later"):
        log.info("job %d: %s in %.0fs (%s)", job_id, outcome.action, outcome.delay, outcome.detail)
        # The new message is published before this one is acked, so the job is never lost.
        raise self.retry(countdown=outcome.delay)
    return outcome.action
