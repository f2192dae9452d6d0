"""Alembic environment: the URL comes from distill's Settings unless the caller set one."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

from distill.config import get_settings
from distill.db import make_engine
from distill.migrate import render_item
from distill.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().database_url


def _configure(connection: Connection) -> None:
    dialect = connection.dialect.name

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        # The PostgreSQL-only indexes (models.trigram_index) exist nowhere else.
        postgresql_only = type_ == "index" and bool(obj.dialect_kwargs.get("postgresql_using"))
        return dialect == "postgresql" or not postgresql_only

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=render_item,
        include_object=include_object,
        # SQLite cannot ALTER most things in place; batch mode recreates tables.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
