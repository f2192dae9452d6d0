"""Shared fixtures. The backend is chosen by DISTILL_TEST_DATABASE (`sqlite`, the default, or
`postgres`); every test gets a freshly migrated schema's empty tables on the real backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from distill import db as dbmod
from distill.config import Settings, get_settings
from distill.migrate import upgrade
from distill.models import Base

PG_ADMIN_URL = os.environ.get(
    "DISTILL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKEND = os.environ.get("DISTILL_TEST_DATABASE", "sqlite")


@pytest.fixture(scope="session")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated with Alembic (the only schema source), made for this test session."""
    if BACKEND == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'distill.db'}"
        upgrade(url)
        yield url
        return
    if BACKEND != "postgres":
        raise pytest.UsageError(f"DISTILL_TEST_DATABASE must be sqlite or postgres, not {BACKEND}")
    name = f"distill_test_{uuid.uuid4().hex[:12]}"
    admin = dbmod.make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        dbmod.get_engine.cache_clear()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _empty_tables(engine: Engine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def settings(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Settings]:
    """Settings pointing at the test database; tables are emptied after the test."""
    monkeypatch.chdir(tmp_path)  # no stray .env or distill.db from the developer's tree
    monkeypatch.setenv("DISTILL_DATABASE_URL", db_url)
    monkeypatch.setenv("DISTILL_TEACHER_MODEL", "test-teacher")
    get_settings.cache_clear()
    dbmod.get_engine.cache_clear()
    yield get_settings()
    _empty_tables(dbmod.get_engine(db_url))
    get_settings.cache_clear()
    dbmod.get_engine.cache_clear()


@pytest.fixture
def engine(settings: Settings) -> Engine:
    return dbmod.get_engine(settings.database_url)


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """A Redis database of the tests' own, as DISTILL_BROKER_URL."""
    from tests.support.workers import redis_db

    with redis_db() as url:
        monkeypatch.setenv("DISTILL_BROKER_URL", url)
        get_settings.cache_clear()
        client = redis.Redis.from_url(url)
        yield client
        client.close()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests about one backend (markers `postgres`, `sqlite`) skip, saying why, on the other;
    scripts/check selects them with -m so that nothing is skipped in CI."""
    for backend in ("postgres", "sqlite"):
        if item.get_closest_marker(backend) and backend != BACKEND:
            pytest.skip(f"needs DISTILL_TEST_DATABASE={backend}")
