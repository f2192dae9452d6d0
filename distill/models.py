"""ORM models: questions, runs, jobs, generations (SQLAlchemy 2 typed style).

Alembic (distill/migrations/) is the only source of the schema; these models and the migrations must
agree (`alembic check` runs in the tests)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from distill.choices.order import OptionOrder

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on every backend (SQLite stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use distill.models.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # None in a nullable JSON column is SQL NULL (so `IS NULL` finds it), not the JSON `null`.
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON(none_as_null=True),
        list[Any]: JSON(none_as_null=True),
        datetime: UTCDateTime,
    }


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class Outcome(enum.StrEnum):
    correct = "correct"
    incorrect = "incorrect"
    truncated = "truncated"
    unparseable = "unparseable"
    empty = "empty"


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored by value as plain strings: readable in SQL and no native PG enum to migrate.
    return Enum(
        cls,
        values_callable=lambda e: [m.value for m in e],
        native_enum=False,
        create_constraint=False,
        length=16,
    )


def trigram_index(name: str, column: str) -> Index:
    """A pg_trgm GIN index, which substring searches (LIKE/ILIKE '%text%') can use; it is
    created on PostgreSQL only (SQLite has no such index)."""
    index = Index(name, column, postgresql_using="gin", postgresql_ops={column: "gin_trgm_ops"})
    return index.ddl_if(dialect="postgresql")


class Question(Base):
    __tablename__ = "questions"
    __table_args__ = (trigram_index("ix_questions_question_trgm", "question"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str] = mapped_column(String(128), index=True)
    question: Mapped[str] = mapped_column(Text)
    choices: Mapped[list[Any]]
    answer_index: Mapped[int]
    # Options that refer to other options ("Both A and B", "All of the above"), found at import:
    # per option a distill.choices.RefKind value or null; NULL when none does. option_order is
    # the rule they imply for shuffling (distill.choices.OrderRule).
    option_refs: Mapped[list[Any] | None]
    option_order: Mapped[OptionOrder] = mapped_column(
        _enum(OptionOrder),
        default=OptionOrder.free,
        server_default=OptionOrder.free.value,
        index=True,  # `distill status` counts the few that are not free
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="enqueue")
    teacher_model: Mapped[str] = mapped_column(String(256))
    prompt_version: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    samples_per_question: Mapped[int]
    requested_n: Mapped[int]
    seed: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # Enqueue is idempotent: one job per question, teacher, prompt, sample and token budget.
        UniqueConstraint(
            "question_id",
            "teacher_model",
            "prompt_version",
            "sample_index",
            "max_tokens",
            name="uq_jobs_question_sample_budget",
        ),
        Index("ix_jobs_run_id_status", "run_id", "status"),
        Index("ix_jobs_status_lease_expires_at", "status", "lease_expires_at"),
        # Covers `distill status`'s queued jobs per route without reading the rows: a freshly
        # enqueued million would otherwise be a million row reads (migration 0005).
        Index(
            "ix_jobs_status_teacher_model_prompt_version",
            "status",
            "teacher_model",
            "prompt_version",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    question_id: Mapped[int] = mapped_column(ForeignKey("questions.id"))
    teacher_model: Mapped[str] = mapped_column(String(256))
    prompt_version: Mapped[str] = mapped_column(String(64))
    sample_index: Mapped[int]
    max_tokens: Mapped[int]
    # Presented option i is the question's original choice choice_order[i]; seeded per job so
    # gold letters come out balanced over a run.
    choice_order: Mapped[list[Any]]
    # A retry of a truncated generation with a bigger budget points at the job it replaces.
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.queued)
    attempts: Mapped[int] = mapped_column(default=0)
    # Claims that ended with the lease running out (the worker died or froze). A job lost twice
    # is run alone next time, so that a job which kills its worker takes no other job with it.
    lost_leases: Mapped[int] = mapped_column(default=0, server_default="0")
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None] = mapped_column(index=True)
    # When its message was last handed to the broker; NULL until the first publish succeeded
    # (enqueue interrupted, broker down): the reconciler sends those (distill.jobs.reconcile).
    published_at: Mapped[datetime | None]

    question: Mapped[Question] = relationship()
    generation: Mapped[Generation | None] = relationship(back_populates="job")


class Generation(Base):
    __tablename__ = "generations"
    __table_args__ = (
        # Covers what `distill status --run` reads of a run's generations (outcome counts,
        # completion tokens) from their job ids: PostgreSQL reads it instead of the rows
        # (migration 0005).
        Index("ix_generations_job_id_outcome_tokens", "job_id", "outcome", "completion_tokens"),
        # The UI's text search (ILIKE '%word%') finds a rare word through it instead of reading
        # every chain; PostgreSQL only, and only where pg_trgm could be installed (0006).
        trigram_index("ix_generations_reasoning_trgm", "reasoning"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), unique=True)
    teacher_model: Mapped[str] = mapped_column(String(256))
    # The whole exchange: messages and sampling params as sent, the raw response text and the
    # server's separate reasoning field (if it used one): nothing export or debugging needs is lost.
    request: Mapped[dict[str, Any]]
    raw_text: Mapped[str] = mapped_column(Text)
    raw_reasoning: Mapped[str | None] = mapped_column(Text)
    response_shape: Mapped[str] = mapped_column(String(32))
    reasoning: Mapped[str | None] = mapped_column(Text)
    answer_text: Mapped[str | None] = mapped_column(Text)
    predicted_letter: Mapped[str | None] = mapped_column(String(1))
    # The predicted option in the question's original order (None if no letter or out of range).
    predicted_index: Mapped[int | None]
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[Outcome] = mapped_column(_enum(Outcome), index=True)
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    latency_s: Mapped[float] = mapped_column(Float)
    # What had to change for the row to be stored, e.g. U+0000 (which PostgreSQL text refuses)
    # replaced in raw_text; NULL when nothing did.
    notes: Mapped[list[Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    job: Mapped[Job] = relationship(back_populates="generation")


class Worker(Base):
    """A worker process, as it last reported itself: `distill status` shows the ones seen
    recently, the ones that stopped heart-beating, and the ones paused by a teacher outage."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)  # hostname:pid
    teacher_model: Mapped[str] = mapped_column(String(256))
    concurrency: Mapped[int]
    in_flight: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Set while the teacher is unreachable or failing for everyone: the worker sends nothing.
    paused_since: Mapped[datetime | None]
    pause_reason: Mapped[str | None] = mapped_column(Text)
    stopped_at: Mapped[datetime | None]


class EvalRun(Base):
    """One `distill eval`: an endpoint and model asked every question of one exported split.

    What was asked is recorded so that the same command continues an interrupted run (the
    parameters and the split's fingerprint match) instead of starting over."""

    __tablename__ = "eval_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(String(512))  # credentials removed
    model: Mapped[str] = mapped_column(String(256))
    data: Mapped[str] = mapped_column(String(1024))
    split: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16))  # reasoning | direct: how the answer is read
    # sha256 of the records' ids and prompts, in order: the same split, whatever its path.
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]]  # max_tokens, temperature, top_p, limit
    budget_seconds: Mapped[float | None] = mapped_column(Float)
    questions: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    items: Mapped[list[EvalItem]] = relationship(back_populates="run")


class EvalItem(Base):
    """One question of an eval run, answered: the reply as the server gave it and how it read."""

    __tablename__ = "eval_items"
    __table_args__ = (UniqueConstraint("eval_run_id", "record_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    eval_run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id"), index=True)
    record_id: Mapped[str] = mapped_column(String(128))
    question_id: Mapped[str] = mapped_column(String(128), index=True)
    subject: Mapped[str] = mapped_column(String(256))
    gold: Mapped[str] = mapped_column(String(1))
    # The letter read from the reply (after the close marker in reasoning mode); None: no answer.
    letter: Mapped[str | None] = mapped_column(String(1))
    closed: Mapped[bool]  # the think block closed (reasoning mode; always False in direct)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    latency_s: Mapped[float | None] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    reasoning: Mapped[str | None] = mapped_column(Text)  # a server's separate reasoning field
    error: Mapped[str | None] = mapped_column(Text)  # a request the server refused (e.g. a 400)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[EvalRun] = relationship(back_populates="items")


__all__ = [
    "Base",
    "EvalItem",
    "EvalRun",
    "Generation",
    "Job",
    "JobStatus",
    "Outcome",
    "Question",
    "Run",
    "Worker",
    "utcnow",
]
