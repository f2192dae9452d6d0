"""Storing results: never throw away what the teacher returned.

A batch of results is written in one transaction. When the database is unreachable, failing
over or refusing writes, the batch is tried again with backoff for up to DISTILL_WRITE_PATIENCE
(the leases run out meanwhile, as nobody can renew them; when the database is back, the worker's
heartbeat renews the leases of the answers waiting too, and reconcilers leave leases alone for
two heartbeats after an outage, so the answers are not taken for lost. A result whose lease was
taken back anyway is still accepted while nobody re-claimed the job: distill.jobs.lease.finish).
When one row cannot be stored at all (a value the backend refuses), the batch is written row by
row, so that row alone becomes a retryable failure with the reason and the rest are kept."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from distill.db import session_scope
from distill.jobs.lease import Failure, Success, finish
from distill.models import JobStatus

log = logging.getLogger(__name__)

Result = Success | Failure
Statuses = dict[int, JobStatus | None]

# Errors of the database as a whole (gone, failing over, read-only, locked, pool exhausted):
# worth waiting for. Anything else is about the rows.
TRANSIENT = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.InternalError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)


class GaveUp(Exception):
    """The database did not take the results within the patience."""


def is_transient(error: BaseException) -> bool:
    return isinstance(error, TRANSIENT)


def store(
    engine: Engine,
    results: Sequence[Result],
    *,
    max_attempts: int,
    patience: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Statuses:
    """Write `results`; each job's new status (None: its lease was lost to another worker).
    Raises GaveUp when the database stayed unusable for `patience` seconds."""
    deadline = time.monotonic() + patience
    delay = 0.5
    while True:
        try:
            return _write(engine, results, max_attempts=max_attempts)
        except TRANSIENT as exc:
            if time.monotonic() + delay > deadline:
                raise GaveUp(f"{type(exc).__name__}: {_first_line(exc)}") from exc
            log.warning(
                "storing %d result(s) failed (%s); trying again in %.0fs",
                len(results),
                _first_line(exc),
                delay,
            )
            sleep(delay)
            # Capped low: once the database is back, the answers are stored within seconds.
            delay = min(delay * 2, 5.0)


def _write(engine: Engine, results: Sequence[Result], *, max_attempts: int) -> Statuses:
    try:
        with session_scope(engine) as session:
            return finish(session, results, max_attempts=max_attempts)
    except TRANSIENT:
        raise
    except sa_exc.SQLAlchemyError as exc:
        if len(results) == 1:
            return _unstorable(engine, results[0], exc, max_attempts=max_attempts)
        log.warning("a result of the batch cannot be stored (%s): row by row", _first_line(exc))
    statuses: Statuses = {}
    for result in results:
        statuses.update(_write(engine, [result], max_attempts=max_attempts))
    return statuses


def _unstorable(
    engine: Engine, result: Result, error: sa_exc.SQLAlchemyError, *, max_attempts: int
) -> Statuses:
    """A row the backend refuses: its job gets a retryable failure with the reason instead."""
    reason = f"the result could not be stored: {type(error).__name__}: {_first_line(error)}"
    log.error("job %d: %s", result.job_id, reason)
    if isinstance(result, Failure):
        raise error  # a failure row is a few small columns: nothing to fall back to
    failure = Failure(result.job_id, result.lease_token, reason, True)
    with session_scope(engine) as session:
        return finish(session, [failure], max_attempts=max_attempts)


def _first_line(error: BaseException) -> str:
    """The error's first line, without SQLAlchemy's statement and parameter dump (which would
    carry prompts and teacher output into the logs)."""
    if isinstance(error, sa_exc.StatementError) and error.orig is not None:
        error = error.orig
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
