"""`distill worker` that dies right after its first job's result is committed, before the
message is acknowledged: `python -m tests.support.crash_after_commit worker ...`.

Celery sends task_postrun when the task has returned (the runner committed the results of the
message's jobs) and before the late ack; exiting there is the crash between commit and ack."""

from __future__ import annotations

import os
from typing import Any

from celery.signals import task_postrun

from distill.cli import main


@task_postrun.connect(weak=False)
def _die(retval: Any = None, **_: Any) -> None:
    if isinstance(retval, str) and "done" in retval:  # e.g. "4 done"
        os._exit(70)


if __name__ == "__main__":
    main()
