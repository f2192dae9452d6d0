"""The worker's engine: many teacher requests in flight from one process, with batched claims
and batched writes.

Celery hands each message (a few job ids) to a thread of its `threads` pool; the thread submits
the ids here and waits for their outcomes, so acks stay late (a killed worker's messages come
back). One asyncio loop, in a thread of its own, claims the submitted jobs in one transaction per
batch, runs their teacher calls concurrently over one HTTP connection pool, and writes results in
one transaction per batch. Idle threads waiting on futures cost little memory; one OS process per
request would cost gigabytes, and one transaction per step per job would compete with vLLM for
the host's CPU.

Beside that work the loop keeps the run alive: a heartbeat renews the leases of the jobs in flight
and tells `distill status` the worker is there; the reconciler (distill.jobs.reconcile) puts back
what dead workers and lost messages left; a teacher outage closes a gate (distill.jobs.outage)
instead of failing jobs; results are stored with patience (distill.jobs.results); and on shutdown
the requests in flight get a grace period, then the rest are handed back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import socket
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from sqlalchemy import Engine

from distill.config import Settings
from distill.db import get_engine, session_scope
from distill.jobs import workers
from distill.jobs.generation import generation_values, without_nul
from distill.jobs.lease import ClaimedJob, ClaimResult, Failure, Success, claim, finish, renew
from distill.jobs.outage import OutageGate
from distill.jobs.reconcile import reconcile
from distill.jobs.results import GaveUp, is_transient, store
from distill.models import JobStatus
from distill.teacher.client import OpenAITeacher, Teacher, TeacherError
from distill.teacher.grading import is_result

log = logging.getLogger(__name__)

Action = Literal["done", "failed", "requeue", "retry_later", "dropped", "reroute", "handback"]
T = TypeVar("T")
Futures = list[concurrent.futures.Future["JobOutcome"]]


@dataclass(frozen=True)
class JobOutcome:
    """What the Celery task should do with its message."""

    job_id: int
    action: Action
    delay: float = 0.0  # seconds before the message comes back (requeue, retry_later)
    detail: str = ""
    # reroute: the job's (teacher model, prompt version); its message belongs on that route.
    route: tuple[str, str] | None = None


_SUMMARY_ACTIONS = ("done", "failed", "requeue", "rerouted", "handback")
STOPPING = "the worker is stopping: handed back"
SOLO_HANDBACK = "handed back uncharged while a job that lost its worker is asked alone"
# Lost leases after which a job is asked alone (distill.models.Job.lost_leases).
SOLO_AFTER = 2


def _requeue_delay(attempts: int) -> float:
    # Exponential backoff between claims of one job, with jitter so a burst of failures does
    # not come back as one burst.
    backoff: float = min(300.0, 5.0 * 2.0 ** max(attempts - 1, 0))
    return backoff * random.uniform(0.5, 1.0)


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
        name: str | None = None,
    ) -> None:
        self._settings = settings
        self._engine = engine or get_engine(settings.database_url)
        self._teacher_factory = teacher_factory or (lambda: OpenAITeacher.from_settings(settings))
        self._batch_size = batch_size
        self._batch_wait = batch_wait
        self._summary_every = summary_every
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._tally: Counter[str] = Counter()
        self._active: dict[int, tuple[ClaimedJob, asyncio.Task[None]]] = {}
        # Outcomes put in the outbox and not yet stored: job id -> lease token. The heartbeat
        # renews these leases too, so that answers waiting out a database outage are not taken
        # for lost when the database comes back (distill.jobs.results).
        self._unwritten: dict[int, str] = {}
        # Loop time of the last database call of the upkeep that failed (see _may_expire).
        self._db_failed_at: float | None = None
        self._claiming = False
        self._draining = False
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, name="distill-runner", daemon=True)
        self._inbox: asyncio.Queue[tuple[int, concurrent.futures.Future[JobOutcome]]]
        self._outbox: asyncio.Queue[tuple[Success | Failure, Futures, int]]
        self._thread.start()
        self._ready.wait()

    # -- called from Celery's threads and signal handlers ------------------------------------
    def submit(self, job_id: int) -> concurrent.futures.Future[JobOutcome]:
        future: concurrent.futures.Future[JobOutcome] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._inbox.put_nowait, (job_id, future))
        return future

    def run(self, job_id: int) -> JobOutcome:
        return self.submit(job_id).result()

    def run_all(self, job_ids: Sequence[int]) -> list[JobOutcome]:
        """Run a message's jobs together (one claim for all); their outcomes, in order."""
        futures = [self.submit(job_id) for job_id in job_ids]
        return [future.result() for future in futures]

    def drain(self, grace: float) -> None:
        """Stop taking jobs; requests in flight get `grace` seconds, then the rest are handed
        back (job queued, uncharged; the message is kept)."""
        self._loop.call_soon_threadsafe(self._start_draining, grace)

    def hand_back_now(self) -> None:
        """A second Ctrl-C: hand back everything in flight at once."""
        self._loop.call_soon_threadsafe(self._start_draining, 0.0)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    # -- the loop ---------------------------------------------------------------------------
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._inbox = asyncio.Queue()
        self._outbox = asyncio.Queue()
        self._teacher = self._teacher_factory()
        self._gate = OutageGate(self._teacher.healthy)
        self._slots = asyncio.Semaphore(self._settings.concurrency)
        self._solo: int | None = None  # the job being asked alone, if any
        self._no_solo = asyncio.Event()
        self._no_solo.set()
        self._tasks = {
            self._loop.create_task(self._claimer()),
            self._loop.create_task(self._writer()),
            self._loop.create_task(self._summaries()),
            self._loop.create_task(self._heartbeat()),
            self._loop.create_task(self._reconciler()),
        }
        self._ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        self._start_draining(0.0)
        # What was handed back is written first, within a bound: a worker never hangs on exit
        # (if the database is down, the leases expire and the reconciler puts the jobs back).
        deadline = self._loop.time() + 30.0
        while (self._active or self._unwritten) and (self._loop.time() < deadline):
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._gate.aclose()
        await self._teacher.aclose()
        try:
            await asyncio.to_thread(self._stopped)
        except Exception:
            log.warning("could not record that worker %s stopped", self.name, exc_info=True)

    def _start_draining(self, grace: float) -> None:
        if not self._draining:
            log.info("stopping: %d request(s) in flight get %.0fs", len(self._active), grace)
        self._draining = True
        self._loop.call_later(grace, self._cancel_active)

    def _cancel_active(self) -> None:
        for _, task in list(self._active.values()):
            task.cancel()

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
            waiting: dict[int, Futures] = defaultdict(list)
            for job_id, future in batch:
                waiting[job_id].append(future)
            if not self._draining:
                # While the teacher is down, claim nothing: the messages wait unacked.
                await self._gate.wait_open()
            if self._draining:
                for job_id, futures in waiting.items():
                    _resolve(futures, JobOutcome(job_id, "handback", detail=STOPPING))
                continue
            # While a job is asked alone, claim nothing: what this worker holds when that job
            # kills it is charged a lost lease. The messages wait unacked meanwhile.
            await self._no_solo.wait()
            self._claiming = True
            try:
                result = await asyncio.to_thread(self._claim, list(waiting))
            except Exception as exc:  # database unreachable: hand the messages back for later
                log.warning("claiming %d job(s) failed: %s", len(waiting), type(exc).__name__)
                for job_id, futures in waiting.items():
                    _resolve(futures, JobOutcome(job_id, "retry_later", 30.0, repr(exc)))
                continue
            finally:
                self._claiming = False
            for job in result.claimed:
                task = self._loop.create_task(self._process(job, waiting[job.job_id]))
                self._active[job.job_id] = (job, task)
            for job_id in result.busy:
                # A live lease: the job is being answered (this is a duplicate message). Should
                # its worker die, the reconciler puts the job back; this copy is not needed.
                _resolve(waiting[job_id], JobOutcome(job_id, "dropped", detail="in progress"))
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

    def _claim(self, job_ids: Sequence[int]) -> ClaimResult:
        with session_scope(self._engine) as session:
            return claim(
                session,
                job_ids,
                lease_seconds=self._settings.lease,
                max_attempts=self._settings.max_attempts,
                teacher_model=self._settings.teacher_model,
            )

    async def _process(self, job: ClaimedJob, futures: Futures) -> None:
        try:
            if job.lost_leases >= SOLO_AFTER:
                outcome = await self._ask_alone(job)
            else:
                async with self._slots:
                    if self._solo is not None:
                        outcome = self._failure(job, SOLO_HANDBACK, True, charge=False)
                    else:
                        outcome = await self._ask_once(job)
        except asyncio.CancelledError:
            outcome = Failure(job.job_id, job.lease_token, STOPPING, True, charge=False)
        finally:
            self._active.pop(job.job_id, None)
        self._unwritten[job.job_id] = job.lease_token
        await self._outbox.put((outcome, futures, job.attempts))

    async def _ask_alone(self, job: ClaimedJob) -> Success | Failure:
        """A job whose workers died holding it, twice: asked while this worker holds nothing
        else, so that if it kills this worker too it alone is charged (and failed after its
        attempts), not the jobs beside it. What has not started yet is handed back uncharged;
        what is in flight finishes and is stored first."""
        if self._solo is not None:
            return self._failure(job, SOLO_HANDBACK, True, charge=False)
        self._solo = job.job_id
        self._no_solo.clear()
        try:
            while len(self._active) > 1 or self._claiming or self._unwritten:
                await asyncio.sleep(0.05)
            log.warning("job %d lost its worker %d times: asked alone", job.job_id, job.lost_leases)
            return await self._ask_once(job)
        finally:
            self._solo = None
            self._no_solo.set()

    async def _ask_once(self, job: ClaimedJob) -> Success | Failure:
        while True:
            await self._gate.wait_open()
            try:
                result = await self._teacher.complete(job.request)
            except TeacherError as exc:
                if exc.status == 404:
                    # The endpoint does not serve the job's model (a misconfigured worker): the
                    # job is not at fault, so it goes back uncharged instead of failing.
                    log.error(
                        "job %d: the teacher does not serve %s (%s); handed back uncharged",
                        job.job_id,
                        job.request.model,
                        exc,
                    )
                    return self._failure(job, str(exc), True, charge=False)
                if await self._gate.is_outage(exc):
                    continue  # the teacher is down for everyone: wait, then send it again
                log.warning("job %d: teacher error: %s", job.job_id, exc)
                return self._failure(job, str(exc), exc.retryable)
            except (
                Exception
            ) as exc:  # a bug or an unexpected library error: retry, keep the message
                log.exception("job %d: unexpected error", job.job_id)
                return self._failure(job, f"{type(exc).__name__}: {exc}", True)
            self._gate.success()
            if not is_result(result.finish_reason):
                # E.g. vLLM aborting in-flight requests as it shuts down: not an answer to grade.
                log.warning(
                    "job %d: generation ended with finish_reason %r; retrying",
                    job.job_id,
                    result.finish_reason,
                )
                return self._failure(
                    job,
                    f"the server ended the generation without a result (finish_reason "
                    f"{result.finish_reason!r} after {result.completion_tokens} tokens)",
                    True,
                )
            values = generation_values(job, result)
            return Success(job.job_id, job.lease_token, values, attempt=job.attempts)

    @staticmethod
    def _failure(job: ClaimedJob, error: str, retryable: bool, *, charge: bool = True) -> Failure:
        return Failure(job.job_id, job.lease_token, without_nul(error), retryable, charge)

    async def _writer(self) -> None:
        while True:
            batch = await self._batch(self._outbox)
            results = [item[0] for item in batch]
            try:
                statuses = await asyncio.to_thread(
                    store,
                    self._engine,
                    results,
                    max_attempts=self._settings.max_attempts,
                    patience=self._settings.write_patience,
                )
            except GaveUp as exc:
                # The answers are lost; the jobs are asked again as soon as the database takes
                # the hand-back (or their leases expire and the reconciler puts them back).
                log.error("storing %d result(s) failed for good: %s", len(results), exc)
                await asyncio.to_thread(self._release, results)
                for result, futures, _ in batch:
                    _resolve(futures, JobOutcome(result.job_id, "requeue", 5.0, str(exc)))
                    self._unwritten.pop(result.job_id, None)
                continue
            for result, futures, attempts in batch:
                outcome = self._outcome(result, statuses.get(result.job_id), attempts)
                self._tally[outcome.action] += 1
                if isinstance(result, Success) and outcome.action == "done":
                    self._tally["tokens"] += result.generation.get("completion_tokens") or 0
                _resolve(futures, outcome)
                self._unwritten.pop(result.job_id, None)

    @staticmethod
    def _outcome(result: Success | Failure, status: JobStatus | None, attempts: int) -> JobOutcome:
        detail = result.error if isinstance(result, Failure) else ""
        if status is None:
            return JobOutcome(result.job_id, "dropped", detail="lease lost")
        if status == JobStatus.done:
            return JobOutcome(result.job_id, "done")
        if status == JobStatus.failed:
            return JobOutcome(result.job_id, "failed", detail=detail)
        if isinstance(result, Failure) and result.error == STOPPING:
            return JobOutcome(result.job_id, "handback", detail=detail)
        delay = 5.0 if isinstance(result, Failure) and not result.charge else 0.0
        return JobOutcome(result.job_id, "requeue", delay or _requeue_delay(attempts), detail)

    def _release(self, results: Sequence[Success | Failure]) -> None:
        released = [
            Failure(r.job_id, r.lease_token, "the result could not be stored", True, charge=False)
            for r in results
        ]
        try:
            with session_scope(self._engine) as session:
                finish(session, released, max_attempts=self._settings.max_attempts)
        except Exception as exc:
            log.warning("could not hand the jobs back either (%s)", type(exc).__name__)

    # -- upkeep -----------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        while True:
            # Taken on the loop, which owns these dicts, not in the thread the beat runs in.
            tokens = [job.lease_token for job, _ in self._active.values()]
            tokens += self._unwritten.values()
            try:
                await asyncio.to_thread(self._beat, tokens, len(self._active))
            except Exception as exc:
                if is_transient(exc):
                    self._db_failed_at = self._loop.time()
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                log.log(level, "heartbeat failed: %s", type(exc).__name__, exc_info=True)
            await asyncio.sleep(self._settings.heartbeat)

    def _beat(self, tokens: Sequence[str], in_flight: int) -> None:
        with session_scope(self._engine) as session:
            renew(session, tokens, lease_seconds=self._settings.lease)
            workers.beat(
                session,
                name=self.name,
                teacher_model=self._settings.teacher_model,
                concurrency=self._settings.concurrency,
                in_flight=in_flight,
                paused_since=self._gate.paused_since,
                pause_reason=self._gate.reason,
            )

    def _stopped(self) -> None:
        with session_scope(self._engine) as session:
            workers.stopped(session, name=self.name)

    def _may_expire(self) -> bool:
        """Whether this worker's reconciler may judge leases now. Just after a database outage
        it may not: the outage stopped every worker's renewals, not only dead workers', so a
        lease that ran out meanwhile says nothing until its holder has had a heartbeat to renew
        it. The last failed call was at most a heartbeat before the database came back, and
        every live worker beats within a heartbeat of that: two heartbeats cover both."""
        failed = self._db_failed_at
        return failed is None or self._loop.time() - failed >= 2 * self._settings.heartbeat

    async def _reconciler(self) -> None:
        while True:
            await asyncio.sleep(self._settings.reconcile_seconds * random.uniform(0.5, 1.0))
            try:
                await asyncio.to_thread(
                    reconcile,
                    self._engine,
                    broker_url=self._settings.broker_url,
                    max_attempts=self._settings.max_attempts,
                    lease_seconds=self._settings.lease,
                    per_message=self._settings.jobs_per_message,
                    backlog=self._settings.broker_backlog,
                    expire=self._may_expire(),
                )
            except Exception as exc:
                if is_transient(exc):
                    self._db_failed_at = self._loop.time()
                log.warning("reconciling failed: %s", type(exc).__name__, exc_info=True)

    async def _summaries(self) -> None:
        """One INFO line per interval instead of lines per job: what finished, what is in
        flight, the completion tokens per second."""
        while True:
            await asyncio.sleep(self._summary_every)
            tally, self._tally = self._tally, Counter()
            if not tally and not self._active:
                continue
            counts = ", ".join(f"{tally[a]} {a}" for a in _SUMMARY_ACTIONS if tally[a])
            paused = (
                f"; paused since {self._gate.paused_since:%H:%M:%S}" if self._gate.paused else ""
            )
            log.info(
                "last %.0fs: %s; %d in flight; %.0f completion tokens/s%s",
                self._summary_every,
                counts or "nothing finished",
                len(self._active),
                tally["tokens"] / self._summary_every,
                paused,
            )


def _resolve(futures: Futures, outcome: JobOutcome) -> None:
    for future in futures:
        if not future.done():
            future.set_result(outcome)
