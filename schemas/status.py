"""`distill status --json`: one object scripts can read."""

from __future__ import annotations

from pydantic import BaseModel


class StatusReport(BaseModel):
    run_id: int | None  # None: every run
    jobs: dict[str, int]  # count by status: queued, running, done, failed
    outcomes: dict[str, int]  # count by generation outcome
    total: int
    accuracy: float | None  # correct / graded generations so far
    window_s: float  # the recent window the rates are measured over
    completion_tokens_per_s: float
    jobs_per_min: float
    eta_s: float | None  # remaining jobs / recent rate; None while nothing finished recently

    @property
    def remaining(self) -> int:
        return self.jobs.get("queued", 0) + self.jobs.get("running", 0)
