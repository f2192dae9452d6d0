"""Programmatic Alembic: `distill db upgrade` and the tests use these, so no alembic.ini is needed
in the working directory."""

from __future__ import annotations

from alembic import command
from alembic.config import Config


def alembic_config(url: str) -> Config:
    cfg = Config()
    # The migrations ship inside the package, so no alembic.ini is needed where distill runs.
    cfg.set_main_option("script_location", "distill:migrations")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raise if the models and the migrations disagree."""
    command.check(alembic_config(url))
