"""status indexes: what `distill status` needs to answer from indexes on a million jobs

questions.option_order (the few referring questions, counted without reading every question),
jobs (status, teacher_model, prompt_version) (queued jobs per route without reading the job
rows) and generations (job_id, outcome, completion_tokens) (a run's outcomes and tokens from its
job ids without reading the generation rows). See docs/benchmarks.md, "Status at scale".

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 16:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_status_teacher_model_prompt_version",
            ["status", "teacher_model", "prompt_version"],
            unique=False,
        )
    with op.batch_alter_table("questions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_questions_option_order"), ["option_order"], unique=False)
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_generations_job_id_outcome_tokens",
            ["job_id", "outcome", "completion_tokens"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.drop_index("ix_generations_job_id_outcome_tokens")
    with op.batch_alter_table("questions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_questions_option_order"))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_teacher_model_prompt_version")
