"""The worker registry: each worker's last word about itself (`workers` table), written with its
heartbeat, read by `distill status` to show who is alive, who stopped heart-beating and who is
paused by a teacher outage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from distill.models import Worker, utcnow


@dataclass(frozen=True, slots=True)
class WorkerState:
    name: str
    teacher_model: str
    concurrency: int
    in_flight: int
    heartbeat_at: datetime
    paused_since: datetime | None
    pause_reason: str | None
    stopped_at: datetime | None


def beat(
    session: Session,
    *,
    name: str,
    teacher_model: str,
    concurrency: int,
    in_flight: int,
    paused_since: datetime | None,
    pause_reason: str | None,
) -> None:
    """Record that the worker `name` is alive, with what it is doing."""
    now = utcnow()
    values = {
        "teacher_model": teacher_model,
        "concurrency": concurrency,
        "in_flight": in_flight,
        "heartbeat_at": now,
        "paused_since": paused_since,
        "pause_reason": pause_reason,
        "stopped_at": None,
    }
    updated = session.execute(update(Worker).where(Worker.name == name).values(**values))
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        session.execute(insert(Worker).values(name=name, started_at=now, **values))


def stopped(session: Session, *, name: str) -> None:
    session.execute(
        update(Worker).where(Worker.name == name).values(stopped_at=utcnow(), in_flight=0)
    )


def recent(session: Session, *, within: timedelta) -> list[WorkerState]:
    """Workers that beat or stopped within `within`, newest first."""
    since = utcnow() - within
    rows = session.execute(
        select(
            Worker.name,
            Worker.teacher_model,
            Worker.concurrency,
            Worker.in_flight,
            Worker.heartbeat_at,
            Worker.paused_since,
            Worker.pause_reason,
            Worker.stopped_at,
        )
        .where(Worker.heartbeat_at >= since)
        .order_by(Worker.heartbeat_at.desc())
    )
    return [WorkerState(*row) for row in rows]
