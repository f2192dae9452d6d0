"""Engine and session factory. SQLite gets the pragmas that make it safe for several worker threads
and a CLI at once; PostgreSQL needs nothing special."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from distill import redact
from distill.config import get_settings
from distill.errors import UserError

# The newest migration (distill/migrations/versions): what a database must be at for this code,
# checked at start without loading Alembic; a test keeps it equal to Alembic's own head.
SCHEMA_HEAD = "0006"


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        # Worker threads share the engine; SQLite's own locking serialises writers.
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 60})
        kwargs.setdefault("hide_parameters", True)
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers (distill status) run while a worker writes.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    # Errors must not carry a statement's parameters (prompts, teacher output) into logs.
    kwargs.setdefault("hide_parameters", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


@lru_cache(maxsize=4)
def get_engine(url: str | None = None) -> Engine:
    """The engine of distill's database, checked once: it exists and holds distill's schema at
    the revision this code needs (UserError otherwise: a command run in the wrong directory
    must not create an empty distill.db and then fail on a missing table)."""
    url = url or get_settings().database_url
    database = make_url(url).database
    local = url.startswith("sqlite") and database not in (None, "", ":memory:")
    if local and not Path(str(database)).exists():
        raise UserError(
            f"no database at {database} (DISTILL_DATABASE_URL={redact.url(url)}); create it "
            "with `distill db upgrade`, or run where it is"
        )
    engine = make_engine(url)
    check_schema(engine)
    return engine


def check_schema(engine: Engine) -> None:
    """UserError unless the database is at the schema revision this code was written for.
    A database that cannot be reached raises SQLAlchemy's OperationalError, as any query would."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            raise UserError(
                f"the database at {redact.url(str(engine.url))} has no distill tables; "
                "create them with `distill db upgrade`"
            )
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if revision != SCHEMA_HEAD:
        raise UserError(
            f"the database at {redact.url(str(engine.url))} is at schema revision {revision}, "
            f"this distill needs {SCHEMA_HEAD}: run `distill db upgrade`"
        )


@lru_cache(maxsize=4)
def _factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = _factory(engine or get_engine())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
