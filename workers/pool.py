"""Celery's threads pool, made to stop.

Celery's cold shutdown (a second Ctrl-C, SIGQUIT) cancels running tasks through
`terminate_job`, which the threads pool does not implement: the worker raised
NotImplementedError and hung until `kill -9`, its jobs `running` for a whole lease. Threads
cannot be killed, but the work they wait for can be handed back: terminating a job tells the
Runner to hand back everything in flight at once (jobs queued, uncharged, messages kept), so the
threads return and the pool stops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from celery.concurrency.thread import TaskPool


class ThreadPool(TaskPool):
    # Set by workers.main before the worker starts: what "terminate" means for distill's jobs.
    on_terminate_job: ClassVar[Callable[[], None] | None] = None

    def terminate_job(self, pid: Any, signal: Any = None) -> None:
        if ThreadPool.on_terminate_job is not None:
            ThreadPool.on_terminate_job()
