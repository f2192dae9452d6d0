"""`distill status --json`: one object scripts can read."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

# What the rates describe: the recent window while jobs are queued or running; the run's own
# average once a run is finished; nothing ("idle") when the whole queue has nothing left.
RateBasis = Literal["recent", "run", "idle"]


# running: heart-beating; paused: heart-beating, sending nothing while the teacher is down;
# silent: no heartbeat for 3 intervals (killed, frozen, cut off); stopped: exited cleanly.
WorkerStateName = Literal["running", "paused", "silent", "stopped"]


class WorkerReport(BaseModel):
    name: str  # hostname:pid
    teacher_model: str
    state: WorkerStateName
    in_flight: int
    last_seen_s: float  # seconds since its last heartbeat
    paused_since: datetime | None = None
    pause_reason: str | None = None


class StatusReport(BaseModel):
    run_id: int | None  # None: every run
    jobs: dict[str, int]  # count by status: queued, running, done, failed
    outcomes: dict[str, int]  # count by generation outcome
    total: int
    accuracy: float | None  # correct / graded generations so far
    window_s: float  # the recent window the rates are measured over while work is left
    rate_basis: RateBasis = "recent"
    completion_tokens_per_s: float
    jobs_per_min: float
    eta_s: float | None  # remaining jobs / recent rate; None while nothing finished recently
    # Questions whose options refer to other options, by order rule (distill.choices):
    # "fixed" keep their original order, "anchored" keep "... of the above" in place.
    referring_questions: dict[str, int] = {}
    # Queued jobs per "teacher model / prompt version": a worker takes only jobs of its own
    # teacher model and of prompt versions its code renders (distill.jobs.publish).
    queued_by_route: dict[str, int] = {}
    # Running jobs whose lease ran out: their worker died or froze; the reconciler puts them
    # back in the queue within DISTILL_RECONCILE_SECONDS.
    stale_leases: int = 0
    workers: list[WorkerReport] = []  # seen in the last 10 minutes, newest first

    @property
    def remaining(self) -> int:
        return self.jobs.get("queued", 0) + self.jobs.get("running", 0)

    def rate_note(self) -> str:
        """How to read the rates, in a few words."""
        if self.rate_basis == "recent":
            return f"last {self.window_s:g} s"
        return "run average" if self.rate_basis == "run" else "idle"
