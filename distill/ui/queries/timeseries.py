"""Seconds since a moment, in SQL, on either backend: for bucketing finish times."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, cast, func, literal
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement


def seconds_since(session: Session, column: Any, start: datetime) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "sqlite":
        # SQLite keeps UTC timestamps as text; julianday() reads them (days, fractional).
        naive = start.replace(tzinfo=None).isoformat(sep=" ")
        return cast((func.julianday(column) - func.julianday(literal(naive))) * 86400.0, Float)
    return cast(func.extract("epoch", column - literal(start)), Float)


def floor_int(session: Session, value: ColumnElement[float]) -> ColumnElement[int]:
    """floor(value) as an integer (CAST alone rounds on PostgreSQL, truncates on SQLite)."""
    if session.get_bind().dialect.name == "sqlite":
        return cast(value, Integer)  # the values bucketed here are never negative
    return cast(func.floor(value), Integer)
