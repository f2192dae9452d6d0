"""The worker's engine: many teacher requests in flight from one process, with batched claims
and batched writes.

Celery hands each message to a thread of its `threads` pool; the thread submits the job id here
and waits for the outcome, so acks stay late (a killed worker's messages come back). One asyncio
loop, in a thread of its own, claims the submitted jobs in one transaction per batch, runs their
teacher calls concurrently over one HTTP connection pool, and writes results in one transaction
per batch. Idle threads waiting on futures cost little memory; one OS process per request would
cost gigabytes, and one transaction per step per job would compete with vLLM for the host's CPU.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from sqlalchemy import Engine
from tenacity import retry, stop_after_attempt, wait_exponential

from distill.config import Settings
from distill.db import get_engine, session_scope
from distill.jobs.generation import generation_values
from distill.jobs.lease import ClaimedJob, ClaimResult, Failure, Success, claim, finish
from distill.models import JobStatus
from distill.teacher.client import OpenAITeacher, Teacher, TeacherError
from distill.teacher.grading import is_result

log = logging.getLogger(__name__)

Action = Literal["done", "failed", "requeue", "retry_later", "dropped", "reroute"]
T = TypeVar("T")


@dataclass(frozen=True)
class JobOutcome:
    """What the Celery task should do with its message."""

    job_id: int
    action: Action
    delay: float = 0.0  # seconds before the message comes back (requeue, retry_later)
    detail: str = ""
    # reroute: the job's (teacher model, prompt version); its message belongs on that route.
    route: tuple[str, str] | None = None


_SUMMARY_ACTIONS = ("done", "failed", "requeue", "rerouted")


def _requeue_delay(attempts: int) -> float:
    # Exponential backoff between claims of one job, with jitter so a burst of failures
    # (e.g. the teacher restarting) does not come back as one burst.
    backoff: float = min(300.0, 5.0 * 2.0 ** max(attempts - 1, 0))
    return backoff * random.uniform(0.5, 1.0)


# The database may blip (failover, lock timeout); a batch write is retried before giving up,
# because giving up means the teacher's work is redone.
_db_retry = retry(stop=stop_after_attempt(5), wait=wait_exponential(0.2, max=5), reraise=True)


class Runner:
    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine | None = None,
        teacher_factory: Callable[[], Teacher] | None = None,
        batch_size: int = 64,
        batch_wait: float = 0.02,
        summary_every: float = 30.0,
    ) -> None:
        self._settings = settings
        self._summary_every = summary_every
        self._tally: Counter[str] = Counter()
        self._in_flight = 0
        self._engine = engine or get_engine(settings.database_url)
        self._teacher_factory = teacher_factory or (lambda: OpenAITeacher.from_settings(settings))
        self._batch_size = batch_size
        self._batch_wait = batch_wait
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, name="distill-runner", daemon=True)
        self._inbox: asyncio.Queue[tuple[int, concurrent.futures.Future[JobOutcome]]]
        self._outbox: asyncio.Queue[
            tuple[Success | Failure, list[concurrent.futures.Future[JobOutcome]], int]
        ]
        self._thread.start()
        self._ready.wait()

    # -- called from Celery's threads -------------------------------------------------------
    def submit(self, job_id: int) -> concurrent.futures.Future[JobOutcome]:
        future: concurrent.futures.Future[JobOutcome] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._inbox.put_nowait, (job_id, future))
        return future

    def run(self, job_id: int) -> JobOutcome:
        return self.submit(job_id).result()

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    # -- the loop ---------------------------------------------------------------------------
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._inbox = asyncio.Queue()
        self._outbox = asyncio.Queue()
        self._teacher = self._teacher_factory()
        self._slots = asyncio.Semaphore(self._settings.concurrency)
        self._tasks = {
            self._loop.create_task(self._claimer()),
            self._loop.create_task(self._writer()),
            self._loop.create_task(self._summaries()),
        }
        self._ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._teacher.aclose()

    async def _summaries(self) -> None:
        """One INFO line per interval instead of lines per job: what finished, what is in
        flight, the completion tokens per second."""
        while True:
            await asyncio.sleep(self._summary_every)
            tally, self._tally = self._tally, Counter()
            if not tally and not self._in_flight:
                continue
            counts = ", ".join(f"{tally[a]} {a}" for a in _SUMMARY_ACTIONS if tally[a])
            log.info(
                "last %.0fs: %s; %d in flight; %.0f completion tokens/s",
                self._summary_every,
                counts or "nothing finished",
                self._in_flight,
                tally["tokens"] / self._summary_every,
            )

    async def _batch(self, queue: asyncio.Queue[T]) -> list[T]:
        """Wait for one item, then gather what else arrives within batch_wait."""
        items = [await queue.get()]
        deadline = self._loop.time() + self._batch_wait
        while len(items) < self._batch_size:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            try:
                items.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return items

    async def _claimer(self) -> None:
        while True:
            batch = await self._batch(self._inbox)
            waiting: dict[int, list[concurrent.futures.Future[JobOutcome]]] = defaultdict(list)
            for job_id, future in batch:
                waiting[job_id].append(future)
            try:
                result = await asyncio.to_thread(self._claim, list(waiting))
            except Exception as exc:  # database unreachable: hand the messages back for later
                log.exception("claiming %d job(s) failed", len(waiting))
                for job_id, futures in waiting.items():
                    _resolve(futures, JobOutcome(job_id, "retry_later", 30.0, repr(exc)))
                continue
            for job in result.claimed:
                self._loop.create_task(self._process(job, waiting[job.job_id]))
            for job_id, seconds in result.busy.items():
                # Someone else holds a live lease (a duplicate message, or a dead worker whose
                # lease has not run out): look again once it would have expired.
                _resolve(waiting[job_id], JobOutcome(job_id, "retry_later", seconds + 1.0))
            for job_id in result.final:
                _resolve(waiting[job_id], JobOutcome(job_id, "dropped", detail="already final"))
            for job_id in result.exhausted:
                _resolve(waiting[job_id], JobOutcome(job_id, "failed", detail="lease expired"))
            self._tally["rerouted"] += len(result.foreign)
            for job_id, route in result.foreign.items():
                # Another teacher model, or a prompt version this code cannot render: never
                # sent here, never charged; its message goes to the workers that can take it.
                detail = f"job is for {route[0]} / prompt {route[1]}"
                _resolve(waiting[job_id], JobOutcome(job_id, "reroute", detail=detail, route=route))

    @_db_retry
    def _claim(self, job_ids: Sequence[int]) -> ClaimResult:
        with session_scope(self._engine) as session:
            return claim(
                session,
                job_ids,
                lease_seconds=self._settings.lease,
                max_attempts=self._settings.max_attempts,
                teacher_model=self._settings.teacher_model,
            )

    async def _process(
        self, job: ClaimedJob, futures: list[concurrent.futures.Future[JobOutcome]]
    ) -> None:
        async with self._slots:
            self._in_flight += 1
            try:
                outcome = await self._ask(job)
            finally:
                self._in_flight -= 1
        await self._outbox.put((outcome, futures, job.attempts))

    async def _ask(self, job: ClaimedJob) -> Success | Failure:
        try:
            result = await self._teacher.complete(job.request)
        except TeacherError as exc:
            if exc.status == 404:
                # The endpoint does not serve the job's model (a misconfigured worker): the job
                # is not at fault, so it goes back uncharged instead of failing.
                log.error(
                    "job %d: the teacher does not serve %s (%s); handed back uncharged",
                    job.job_id,
                    job.request.model,
                    exc,
                )
                return Failure(job.job_id, job.lease_token, str(exc), True, charge=False)
            log.warning("job %d: teacher error: %s", job.job_id, exc)
            return Failure(job.job_id, job.lease_token, str(exc), exc.retryable)
        except Exception as exc:  # a bug or an unexpected library error: retry, keep the message
            log.exception("job %d: unexpected error", job.job_id)
            return Failure(job.job_id, job.lease_token, f"{type(exc).__name__}: {exc}", True)
        if not is_result(result.finish_reason):
            # E.g. vLLM aborting in-flight requests as it shuts down: not an answer to grade.
            log.warning(
                "job %d: generation ended with finish_reason %r; retrying",
                job.job_id,
                result.finish_reason,
            )
            return Failure(
                job.job_id,
                job.lease_token,
                f"the server ended the generation without a result (finish_reason "
                f"{result.finish_reason!r} after {result.completion_tokens} tokens)",
                True,
            )
        return Success(job.job_id, job.lease_token, generation_values(job, result))

    async def _writer(self) -> None:
        while True:
            batch = await self._batch(self._outbox)
            results = [item[0] for item in batch]
            try:
                statuses = await asyncio.to_thread(self._finish, results)
            except Exception as exc:
                # The lease stays; the message comes back and the job is redone after expiry.
                log.exception("writing %d result(s) failed", len(results))
                for result, futures, _ in batch:
                    _resolve(futures, JobOutcome(result.job_id, "retry_later", 30.0, repr(exc)))
                continue
            for result, futures, attempts in batch:
                status = statuses.get(result.job_id)
                detail = result.error if isinstance(result, Failure) else ""
                if status is None:
                    outcome = JobOutcome(result.job_id, "dropped", detail="lease lost")
                elif status == JobStatus.queued:
                    outcome = JobOutcome(result.job_id, "requeue", _requeue_delay(attempts), detail)
                elif status == JobStatus.done:
                    outcome = JobOutcome(result.job_id, "done")
                else:
                    outcome = JobOutcome(result.job_id, "failed", detail=detail)
                self._tally[outcome.action] += 1
                if isinstance(result, Success) and status == JobStatus.done:
                    self._tally["tokens"] += result.generation.get("completion_tokens") or 0
                _resolve(futures, outcome)

    @_db_retry
    def _finish(self, results: Sequence[Success | Failure]) -> dict[int, JobStatus | None]:
        with session_scope(self._engine) as session:
            return finish(session, results, max_attempts=self._settings.max_attempts)


def _resolve(futures: list[concurrent.futures.Future[JobOutcome]], outcome: JobOutcome) -> None:
    for future in futures:
        if not future.done():
            future.set_result(outcome)
