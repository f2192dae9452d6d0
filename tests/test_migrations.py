"""Alembic is the only source of the schema: the models must match the migrations on the real
backend, and the migrations must run down and up again."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from distill.config import Settings
from distill.db import get_engine
from distill.migrate import alembic_config, check


def test_alembic_check_finds_no_drift(settings: Settings) -> None:
    check(settings.database_url)  # raises when autogenerate would emit any operation


def test_downgrade_to_base_and_upgrade_again(settings: Settings) -> None:
    cfg = alembic_config(settings.database_url)
    engine = get_engine(settings.database_url)
    command.downgrade(cfg, "base")
    assert not {"questions", "runs", "jobs", "generations"} & set(inspect(engine).get_table_names())
    command.upgrade(cfg, "head")
    tables = set(inspect(engine).get_table_names())
    assert {"questions", "runs", "jobs", "generations"} <= tables
    check(settings.database_url)
