"""The one thin task: take a message's job ids, hand them to the process's Runner, act on the
outcomes."""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down

from distill.config import Settings
from distill.jobs.publish import SINGLE_TASK_NAME, TASK_NAME, queue_name
from distill.jobs.runner import STOPPING, JobOutcome, Runner

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
    def run_jobs(self: Task[[Any], str], job_ids: Any) -> str:
        """Run a message's jobs. Safe to receive twice or after they finished: claims decide."""
        if type(job_ids) is not list or not all(type(i) is int for i in job_ids):
            # Not a message distill sent: dropped (acked), and it delays no other job.
            log.warning("dropped a malformed message: %r is not a list of job ids", job_ids)
            return "dropped"
        return _act(self, runners.get().run_all(job_ids))

    @app.task(name=SINGLE_TASK_NAME, bind=True, max_retries=None)
    def run_job(self: Task[[Any], str], job_id: Any) -> str:
        """A message of one job id, as distill sent them before messages carried lists."""
        if type(job_id) is not int:
            log.warning("dropped a malformed message: job id %r is not an integer", job_id)
            return "dropped"
        return _act(self, runners.get().run_all([job_id]))

    return runners


def _act(task: Task[[Any], str], outcomes: Sequence[JobOutcome]) -> str:
    """Act on the outcomes of a message's jobs, then let the message be acked.

    Jobs to be asked again get new messages, one per route and delay, sent before this one is
    acked, so no job is ever without a message. Should sending fail, this message is rejected
    back to its queue instead (its final jobs are dropped when it comes back: claims decide)."""
    if any(o.action == "handback" for o in outcomes):
        # The worker is stopping: the message goes back whole, its unfinished jobs queued.
        raise Reject(STOPPING, requeue=True)
    resend: dict[tuple[str | None, float], list[int]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.action == "reroute" and outcome.route is not None:
            # Not this worker's model or prompt version: to the queue of those that can take it.
            log.debug("job %d: %s; routed to its own queue", outcome.job_id, outcome.detail)
            resend[(queue_name(outcome.route), 0.0)].append(outcome.job_id)
        elif outcome.action in ("requeue", "retry_later"):
            log.debug(
                "job %d: %s in %.0fs (%s)",
                outcome.job_id,
                outcome.action,
                outcome.delay,
                outcome.detail,
            )
            resend[(None, round(outcome.delay))].append(outcome.job_id)
    try:
        for (queue, delay), ids in resend.items():
            task.app.send_task(
                TASK_NAME,
                args=[ids],
                queue=queue or _own_queue(task),
                countdown=delay or None,
            )
    except Exception as exc:
        jobs = sum(len(ids) for ids in resend.values())
        log.warning("could not send %d job(s) again (%s): message kept", jobs, exc)
        raise Reject(str(exc), requeue=True) from exc
    actions = Counter(o.action for o in outcomes)
    return ", ".join(f"{n} {action}" for action, n in sorted(actions.items()))


def _own_queue(task: Task[[Any], str]) -> str:
    """The queue the message came from (a retry goes back where it was)."""
    info = task.request.delivery_info or {}
    queue = info.get("routing_key")
    return str(queue) if queue else str(task.app.conf.task_default_queue)
