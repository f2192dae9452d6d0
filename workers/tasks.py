"""The one thin task: take a job id, hand it to the process's Runner, act on the outcome."""

from __future__ import annotations

import logging
import threading

from celery import Celery, Task
from celery.signals import worker_shutdown

from distill.config import Settings
from distill.jobs.publish import TASK_NAME, queue_name
from distill.jobs.runner import Runner

log = logging.getLogger(__name__)


class _Runners:
    """One Runner per worker process, made on the first message with the worker's settings."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runner: Runner | None = None
        self._lock = threading.Lock()

    def get(self) -> Runner:
        with self._lock:
            if self._runner is None:
                self._runner = Runner(settings=self._settings)
            return self._runner

    def close(self, **_: object) -> None:
        with self._lock:
            if self._runner is not None:
                self._runner.close()
                self._runner = None


def register(app: Celery, settings: Settings) -> None:
    """Add the `distill.run_job` task to `app`, running jobs with a Runner for `settings`."""
    runners = _Runners(settings)
    worker_shutdown.connect(runners.close, weak=False)

    @app.task(name=TASK_NAME, bind=True, max_retries=None)
    def run_job(self: Task[[int], str], job_id: int) -> str:
        """Run one job. Safe to receive twice or after the job finished: the claim decides."""
        outcome = runners.get().run(job_id)
        if outcome.action == "reroute" and outcome.route is not None:
            # Not this worker's model or prompt version: to the queue of those that can take it.
            log.debug("job %d: %s; routed to its own queue", job_id, outcome.detail)
            self.app.send_task(TASK_NAME, args=[job_id], queue=queue_name(outcome.route))
            return outcome.action
        if outcome.action in ("requeue", "retry_later"):
            log.debug(
                "job %d: %s in %.0fs (%s)", job_id, outcome.action, outcome.delay, outcome.detail
            )
            # The new message is published before this one is acked, so the job is never lost.
            raise self.retry(countdown=outcome.delay)
        return outcome.action
