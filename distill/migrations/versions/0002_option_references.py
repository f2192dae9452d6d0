"""options that refer to other options: questions.option_refs and questions.option_order

Backfills both for the questions already stored, and gives queued jobs whose option order would
change what such an option means the question's original order (jobs already asked keep theirs;
export leaves their generations out).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# The detector, not the models: the backfill must classify questions the way imports do.
from distill.choices.order import OrderRule
from distill.choices.references import detect

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 2000


def upgrade() -> None:
    with op.batch_alter_table("questions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("option_refs", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "option_order",
                sa.Enum(
                    "free", "anchored", "fixed", name="optionorder", native_enum=False, length=16
                ),
                server_default="free",
                nullable=False,
            )
        )
    _backfill()


def _backfill() -> None:
    bind = op.get_bind()
    questions = sa.table(
        "questions",
        sa.column("id", sa.Integer),
        sa.column("question", sa.Text),
        sa.column("choices", sa.JSON),
        sa.column("option_refs", sa.JSON),
        sa.column("option_order", sa.String),
    )
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.Integer),
        sa.column("question_id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("choice_order", sa.JSON),
    )
    rules: dict[int, OrderRule] = {}
    last = 0
    while True:
        rows = bind.execute(
            sa.select(questions.c.id, questions.c.question, questions.c.choices)
            .where(questions.c.id > last)
            .order_by(questions.c.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            break
        last = rows[-1][0]
        for qid, text, choices in rows:
            refs = detect(text, choices)
            if refs is None:
                continue
            stored = [str(kind) if kind else None for kind in refs]
            rule = OrderRule.of(len(choices), stored)
            rules[qid] = rule
            bind.execute(
                questions.update()
                .where(questions.c.id == qid)
                .values(option_refs=stored, option_order=rule.kind.value)
            )
    for qid, rule in rules.items():
        for job_id, order in bind.execute(
            sa.select(jobs.c.id, jobs.c.choice_order).where(
                jobs.c.question_id == qid, jobs.c.status == "queued"
            )
        ).all():
            if not rule.allows(order):
                bind.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id)
                    .values(choice_order=list(range(rule.n_options)))
                )


def downgrade() -> None:
    with op.batch_alter_table("questions", schema=None) as batch_op:
        batch_op.drop_column("option_order")
        batch_op.drop_column("option_refs")
