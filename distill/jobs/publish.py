"""Publishing job ids to the broker. Only the task's name and queue are shared with `workers/`,
so the CLI can publish without importing the worker side (imports flow distill ← workers)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from celery import Celery

TASK_NAME = "distill.run_job"
QUEUE = "distill"


@lru_cache(maxsize=4)
def producer_app(broker_url: str) -> Celery:
    app = Celery("distill-producer", broker=broker_url)
    app.conf.update(task_serializer="json", accept_content=["json"], task_default_queue=QUEUE)
    return app


def publish(job_ids: Iterable[int], *, broker_url: str, countdown: float | None = None) -> int:
    """Send one message per job id, over one connection. Call only after the jobs are committed."""
    app = producer_app(broker_url)
    sent = 0
    with app.producer_or_acquire() as producer:
        for job_id in job_ids:
            app.send_task(
                TASK_NAME, args=[job_id], queue=QUEUE, producer=producer, countdown=countdown
            )
            sent += 1
    return sent
