"""search indexes: pg_trgm GIN indexes on chains and questions for the UI's text search

`distill ui`'s search is a case-insensitive substring match (ILIKE '%word%'). Without an index a
word found in few chains reads every chain (3.6 s per 100,000 on PostgreSQL); with these, the
planner finds such a word through the index and still reads a common one from the newest chain
down, stopping at a page. PostgreSQL only; pg_trgm ships with PostgreSQL (contrib) and is a
trusted extension, so the database's owner can install it. Where it cannot be installed the
indexes are skipped with a warning and the search works as before, only slower.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 01:40:00
"""

import logging
from collections.abc import Sequence

from alembic import op
from sqlalchemy.exc import DBAPIError

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("alembic.runtime.migration")

INDEXES = (
    ("ix_generations_reasoning_trgm", "generations", "reasoning"),
    ("ix_questions_question_trgm", "questions", "question"),
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    try:
        with bind.begin_nested():  # a savepoint: a refusal must not abort the whole upgrade
            op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DBAPIError as exc:
        statements = " ".join(f"{create(*index)};" for index in INDEXES)
        logger.warning(
            "pg_trgm could not be installed (%s): the search indexes were skipped, and the "
            "UI's text search reads every chain to find a rare word. To add them, as a role "
            "that may: CREATE EXTENSION pg_trgm; %s",
            str(exc.orig).strip().splitlines()[0],
            statements,
        )
        return
    for index in INDEXES:
        op.execute(create(*index))


def create(name: str, table: str, column: str) -> str:
    return f"CREATE INDEX {name} ON {table} USING gin ({column} gin_trgm_ops)"


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _, _ in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
