"""`distill status --json`: one object scripts can read."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

# What the rates describe: the recent window while jobs are queued or running; the run's own
# average once a run is finished; nothing ("idle") when the whole queue has nothing left.
RateBasis = Literal["recent", "run", "idle"]


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

    @property
    def remaining(self) -> int:
        return self.jobs.get("queued", 0) + self.jobs.get("running", 0)

    def rate_note(self) -> str:
        """How to read the rates, in a few words."""
        if self.rate_basis == "recent":
            return f"last {self.window_s:g} s"
        return "run average" if self.rate_basis == "run" else "idle"
