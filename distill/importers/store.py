"""Put validated questions in the database: `import_questions` is what `distill import` runs.

Deduplicated by content uid within the source and against the table, inserted in chunks inside
one transaction: a failed import leaves nothing behind and importing the same file twice adds
nothing. `ON CONFLICT (uid) DO NOTHING` skips questions already stored (also those a concurrent
import of an overlapping file just committed), and RETURNING makes the inserted count exact."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Engine, Table, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from distill.choices import OrderRule, detect
from distill.db import session_scope
from distill.errors import UserError
from distill.importers.layout import FieldMapping
from distill.importers.load import ProgressCallback, load_mcqs, write_rejections
from distill.importers.rows import column_length
from distill.models import Question, utcnow
from schemas.mcq import MCQRecord

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Inserts rows (column -> value) and returns how many were new.
Inserter = Callable[[list[dict[str, Any]]], int]
INSERT_CHUNK = 2000
# Bound parameters per uid look-up: well under SQLite's and PostgreSQL's limits.
LOOKUP_CHUNK = 500
SOURCE_MAX = column_length("source")


@dataclass(frozen=True, slots=True)
class StoreCounts:
    inserted: int
    duplicates_in_source: int  # repeats of a question earlier in the same source
    already_present: int  # questions the database already held
    referring: int = 0  # of the source's questions, those with options that refer to others


@dataclass(frozen=True, slots=True)
class ImportReport:
    source: str
    preset: str | None
    rows_read: int
    inserted: int
    duplicates_in_source: int
    already_present: int
    rejected: int
    report_path: Path | None  # the rejection report, when rows were rejected
    referring: int = 0  # questions with options that refer to other options (see choices)

    @property
    def duplicates(self) -> int:
        return self.duplicates_in_source + self.already_present

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duplicates"] = self.duplicates
        data["report_path"] = str(self.report_path) if self.report_path else None
        return data


def import_questions(
    source: str,
    *,
    preset: str | None = None,
    mapping: FieldMapping | None = None,
    split: str | None = None,
    config_name: str | None = None,
    subject: str | None = None,
    skip_invalid: bool = False,
    report_path: Path | None = None,
    limit: int | None = None,
    engine: Engine | None = None,
    progress: ProgressCallback | None = None,
) -> ImportReport:
    """Load `source` (see load_mcqs) and insert its new questions; all or nothing.

    With `skip_invalid`, rejected rows go to `report_path` (default `<stem>.rejected.jsonl` in
    the working directory) and the valid ones are imported."""
    loaded = load_mcqs(
        source,
        preset=preset,
        mapping=mapping,
        split=split,
        config_name=config_name,
        subject=subject,
        skip_invalid=skip_invalid,
        limit=limit,
        progress=progress,
    )
    written: Path | None = None
    if loaded.rejected:
        written = report_path or default_report_path(source)
        write_rejections(written, loaded.rejected)
    try:
        with session_scope(engine) as session:
            counts = store_questions(session, records=loaded.records, progress=progress)
    except Exception as exc:
        refused = _refused_data(exc)
        if refused is None:
            raise
        raise UserError(
            f"{source}: the database refused a question ({refused}); nothing imported"
        ) from None
    report = ImportReport(
        source=loaded.source,
        preset=loaded.preset,
        rows_read=loaded.rows_read,
        inserted=counts.inserted,
        duplicates_in_source=counts.duplicates_in_source,
        already_present=counts.already_present,
        rejected=len(loaded.rejected),
        report_path=written,
        referring=counts.referring,
    )
    logger.info("import %s: %s", source, report.to_dict())
    return report


def store_questions(
    session: Session, *, records: Sequence[MCQRecord], progress: ProgressCallback | None = None
) -> StoreCounts:
    """Insert the records whose uid is new, in the caller's transaction."""
    unique: dict[str, MCQRecord] = {}
    for record in records:
        unique.setdefault(record.uid, record)
    insert_rows = _inserter(session)
    new = list(unique.items())
    if insert_rows is None:  # no ON CONFLICT on this backend: filter by a look-up instead
        insert_rows = _plain_inserter(session)
        existing = _existing(session, list(unique))
        new = [(uid, record) for uid, record in new if uid not in existing]

    created_at = utcnow()  # one import, one timestamp
    inserted = done = referring = 0
    for chunk in _chunks(new, INSERT_CHUNK):
        rows = [question_row(record, uid=uid, created_at=created_at) for uid, record in chunk]
        referring += sum(1 for row in rows if row["option_refs"] is not None)
        inserted += insert_rows(rows)
        done += len(chunk)
        if progress is not None:
            progress("insert", done, len(new))
    if len(new) < len(unique):  # the rest are already stored: count them from the source
        stored = {uid for uid, _ in new}
        referring += sum(
            1
            for uid, record in unique.items()
            if uid not in stored and detect(record.question, record.choices) is not None
        )
    return StoreCounts(
        inserted=inserted,
        duplicates_in_source=len(records) - len(unique),
        already_present=len(unique) - inserted,
        referring=referring,
    )


def default_report_path(source: str) -> Path:
    """`<input stem>.rejected.jsonl` in the working directory (Hub ids: `owner_name`)."""
    path = Path(source).expanduser()
    if path.is_file():
        name = Path(re.sub(r"\.gz$", "", path.name, flags=re.IGNORECASE)).stem
    else:  # a dataset directory, or a Hub id whose owner is kept: cais/mmlu -> cais_mmlu
        name = path.name if path.is_dir() else source
    return Path.cwd() / (re.sub(r"[^\w.-]+", "_", name) + ".rejected.jsonl")


def _refused_data(exc: Exception) -> str | None:
    """The database's reason when `exc` is its refusal of a value (a DataError), else None.
    Rows are checked before they are stored (rows.py), so this is a last line, not the rule.
    psycopg's own errors arrive unwrapped from the pipelined insert (_insert_psycopg)."""
    from sqlalchemy.exc import DataError

    if isinstance(exc, DataError):
        return _first_line(exc.orig if exc.orig is not None else exc)
    if type(exc).__module__.startswith("psycopg"):
        import psycopg

        if isinstance(exc, psycopg.DataError):
            return _first_line(exc)
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _inserter(session: Session) -> Inserter | None:
    """A function inserting rows with ON CONFLICT (uid) DO NOTHING and returning how many went
    in; None for backends without that clause.

    The conflict clause does the dedup against the table, with no look-up first: a look-up of
    freshly imported uids is slow on PostgreSQL until the table is analysed (the planner picks a
    sequential scan), and it could miss a concurrent import of an overlapping file."""
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        return lambda rows: _insert_psycopg(session, rows)
    table = cast(Table, Question.__table__)
    if dialect.name == "postgresql":
        pg = postgresql.insert(table).on_conflict_do_nothing(index_elements=["uid"])
        return _returning_inserter(session, pg.returning(table.c.uid))
    if dialect.name == "sqlite":
        lite = sqlite.insert(table).on_conflict_do_nothing(index_elements=["uid"])
        return _returning_inserter(session, lite.returning(table.c.uid))
    return None


def _plain_inserter(session: Session) -> Inserter:
    table = cast(Table, Question.__table__)
    return _returning_inserter(session, insert(table).returning(table.c.uid))


def _returning_inserter(session: Session, statement: ReturningInsert[tuple[str]]) -> Inserter:
    # RETURNING lists only the rows the conflict clause let through.
    return lambda rows: len(session.execute(statement, rows).all())


def _insert_psycopg(session: Session, rows: list[dict[str, Any]]) -> int:
    """psycopg's pipelined executemany of one prepared statement: ~6x less time than
    SQLAlchemy's multi-row VALUES batches, whose thousands of placeholders psycopg parses anew
    for every batch. Runs on the session's connection, so inside its transaction."""
    from psycopg.types.json import Json

    columns = list(rows[0])
    sql = (
        f"INSERT INTO {Question.__tablename__} ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        "ON CONFLICT (uid) DO NOTHING RETURNING uid"
    )
    params = [
        [Json(v) if k in _JSON_COLUMNS and v is not None else v for k, v in row.items()]
        for row in rows
    ]
    inserted = 0
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        cursor.executemany(sql, params, returning=True)
        for _ in cursor.results():
            inserted += len(cursor.fetchall())
    return inserted


def _existing(session: Session, uids: list[str]) -> set[str]:
    """The uids the table already holds (for backends without ON CONFLICT)."""
    found: set[str] = set()
    for chunk in _chunks(uids, LOOKUP_CHUNK):
        found.update(session.scalars(select(Question.uid).where(Question.uid.in_(chunk))))
    return found


_JSON_COLUMNS = frozenset({"choices", "option_refs"})


def question_row(
    record: MCQRecord, *, uid: str | None = None, created_at: datetime | None = None
) -> dict[str, Any]:
    """The `questions` row of a record, with its referring options found (distill.choices)."""
    refs = detect(record.question, record.choices)
    stored = [str(kind) if kind else None for kind in refs] if refs is not None else None
    return {
        "uid": uid or record.uid,
        "source": record.source[:SOURCE_MAX],
        "subject": record.subject,
        "question": record.question,
        "choices": list(record.choices),
        "answer_index": record.answer_index,
        "option_refs": stored,
        "option_order": OrderRule.of(len(record.choices), stored).kind.value,
        "created_at": created_at or utcnow(),
    }


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
