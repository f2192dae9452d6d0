"""The Celery app: configuration only, from the Settings it is given. The task is in
workers/tasks.py; `distill worker` builds the app with `make_app(settings)` and starts it
(workers/main.py)."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from distill.config import Settings
from distill.jobs.publish import worker_queues
from workers import tasks


def make_app(settings: Settings) -> Celery:
    """A worker app for `settings`: it consumes the queues of settings.teacher_model (one per
    prompt version this code renders) and runs jobs with a Runner configured by `settings`."""
    return build(settings)[0]


def build(settings: Settings) -> tuple[Celery, tasks.Runners]:
    """The worker app, and the holder of its Runner (for the shutdown hooks)."""
    queues = worker_queues(settings.teacher_model)
    app = Celery("distill", broker=settings.broker_url)
    app.conf.update(
        # Messages carry only a job id; JSON keeps them readable and rules out pickle payloads.
        task_serializer="json",
        accept_content=["json"],
        # Results live in the database, not in a Celery result backend.
        task_ignore_result=True,
        # Jobs are routed by (teacher model, prompt version): this worker takes only jobs it can
        # send to its own endpoint in the words they were made with (distill.jobs.publish).
        task_queues=[Queue(name, Exchange(name), routing_key=name) for name in queues],
        task_default_queue=queues[0],
        # Ack only after the job's result is written: a worker killed mid-request leaves its
        # messages unacknowledged, and the broker hands them to another worker.
        task_acks_late=True,
        # Celery's threads pool, taught to stop on a second Ctrl-C (workers/pool.py).
        worker_pool="workers.pool:ThreadPool",
        # Each pool thread holds one message at a time; the worker reserves no more messages than
        # it has requests in flight, so idle workers on other hosts get the rest.
        worker_prefetch_multiplier=1,
        broker_transport_options={
            # An unacked message is redelivered after this many seconds. It outlasts the
            # longest claim, so a live long generation's message is not delivered twice. A dead
            # worker's jobs do not wait for it: their leases expire, and the reconciler gives
            # back the messages it took before claiming (distill.jobs.reconcile).
            "visibility_timeout": settings.visibility,
        },
        # Survive a Redis restart at start-up instead of dying before the first message.
        broker_connection_retry_on_startup=True,
        # Not set, because the threads pool cannot honour them: task_reject_on_worker_lost (no
        # child process to lose), worker_cancel_long_running_tasks_on_connection_loss (it would
        # try to kill threads), task_time_limit. The runner bounds each request itself (the
        # request timeout), leases bound a dead worker, and the reconciler puts its jobs back.
        worker_hijack_root_logger=False,
    )
    runners = tasks.register(app, settings)
    return app, runners
