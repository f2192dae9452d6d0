"""The one thin task: take a job id, hand it to the process's Runner, act on the outcome."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down

from distill.config import Settings
from distill.jobs.publish import TASK_NAME, queue_name
from distill.jobs.runner import Runner

log = logging.getLogger(__name__)


class Runners:
    """One Runner per worker process, made when the worker is ready, with its settings."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runner: Runner | None = None
        self._lock = threading.Lock()

    def start(self, **_: object) -> None:
        """At worker start, not at the first message: the heartbeat and the reconciler must run
        on a worker that has nothing to do, or a dead worker's jobs wait for a message."""
        self.get()

    def get(self) -> Runner:
        with self._lock:
            if self._runner is None:
                self._runner = Runner(settings=self._settings)
            return self._runner

    def drain(self, **_: object) -> None:
        """The first SIGTERM or Ctrl-C: take no more jobs, give those in flight the grace."""
        with self._lock:
            if self._runner is not None:
                self._runner.drain(self._settings.shutdown_grace)

    def hand_back_now(self) -> None:
        with self._lock:
            if self._runner is not None:
                self._runner.hand_back_now()

    def close(self, **_: object) -> None:
        with self._lock:
            if self._runner is not None:
                self._runner.close()
                self._runner = None


def register(app: Celery, settings: Settings) -> Runners:
    """Add the `distill.run_job` task to `app`, running jobs with a Runner for `settings`."""
    runners = Runners(settings)
    worker_ready.connect(runners.start, weak=False)
    worker_shutting_down.connect(runners.drain, weak=False)
    worker_shutdown.connect(runners.close, weak=False)

    @app.task(name=TASK_NAME, bind=True, max_retries=None)
    def run_job(self: Task[[Any], str], job_id: Any) -> str:
        """Run one job. Safe to receive twice or after the job finished: the claim decides."""
        if type(job_id) is not int:
            # Not a message distill sent: dropped (acked), and it delays no other job.
            log.warning("dropped a malformed message: job id %r is not an integer", job_id)
            return "dropped"
        outcome = runners.get().run(job_id)
        if outcome.action == "reroute" and outcome.route is not None:
            # Not this worker's model or prompt version: to the queue of those that can take it.
            log.debug("job %d: %s; routed to its own queue", job_id, outcome.detail)
            self.app.send_task(TASK_NAME, args=[job_id], queue=queue_name(outcome.route))
            return outcome.action
        if outcome.action == "handback":
            # The worker is stopping: the job is queued again and its message stays.
            raise Reject(outcome.detail, requeue=True)
        if outcome.action in ("requeue", "retry_later"):
            log.debug(
                "job %d: %s in %.0fs (%s)", job_id, outcome.action, outcome.delay, outcome.detail
            )
            # The new message is published before this one is acked, so the job is never lost.
            raise self.retry(countdown=outcome.delay)
        return outcome.action

    return runners
