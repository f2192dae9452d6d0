"""The chain browser's list: filters, sort, LIMIT/OFFSET pages, over small columns.

Only the page's rows are read, with the first characters of each question; a question's
difficulty (1 - pass rate over its finished samples, in the selected run if one is) is computed
for the page's questions only, unless the filters or the sort need it for every question."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, Float, Select, case, cast, func, or_, select, union
from sqlalchemy.orm import Session

from distill.choices import gold_letter
from distill.jobs.status import generation_of_job
from distill.models import Generation, Job, Outcome, Question
from distill.ui.forms import Blank

PER_PAGE = 50
PREVIEW_CHARS = 160


class Sort(enum.StrEnum):
    newest = "newest"
    oldest = "oldest"
    longest = "longest"
    shortest = "shortest"
    slowest = "slowest"
    fastest = "fastest"
    hardest = "hardest"
    easiest = "easiest"


Share = Annotated[float, Field(ge=0.0, le=1.0)]


class ChainFilters(BaseModel):
    """The browser's query string. An empty field (as a form sends it) means "any"."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run: Annotated[int | None, Blank] = None
    subject: Annotated[Annotated[str, Field(max_length=128)] | None, Blank] = None
    outcome: Annotated[Outcome | None, Blank] = None
    finish: Annotated[Annotated[str, Field(max_length=32)] | None, Blank] = None
    dmin: Annotated[Share | None, Blank] = None
    dmax: Annotated[Share | None, Blank] = None
    q: Annotated[Annotated[str, Field(max_length=200)] | None, Blank] = None
    sort: Sort = Sort.newest
    page: Annotated[int, Field(ge=1, le=100_000)] = 1

    @property
    def needs_difficulty(self) -> bool:
        return (
            self.dmin is not None
            or self.dmax is not None
            or self.sort in (Sort.hardest, Sort.easiest)
        )

    def params(self) -> dict[str, object]:
        """As a query string's parameters, without the defaults."""
        return self.model_dump(mode="json", exclude_defaults=True)


@dataclass(frozen=True, slots=True)
class ChainRow:
    generation_id: int
    job_id: int
    run_id: int
    question_id: int
    sample_index: int
    subject: str
    question: str  # the first PREVIEW_CHARS characters
    outcome: Outcome
    finish_reason: str | None
    completion_tokens: int | None
    latency_s: float
    predicted: str | None
    gold: str
    difficulty: float | None


@dataclass(frozen=True, slots=True)
class ChainPage:
    rows: list[ChainRow]
    page: int
    per_page: int
    total: int | None  # None when a text search makes counting as slow as reading everything
    has_next: bool

    @property
    def pages(self) -> int | None:
        return None if self.total is None else max(1, -(-self.total // self.per_page))


def difficulty_by_question(session: Session, *, run_id: int | None) -> Any:
    """Per question: 1 - (correct / finished samples), as a subquery (qid, difficulty)."""
    correct = func.sum(case((Generation.outcome == Outcome.correct, 1.0), else_=0.0))
    stmt = (
        select(
            Job.question_id.label("qid"),
            (1.0 - cast(correct, Float) / func.count()).label("difficulty"),
        )
        .select_from(Job)
        .join(Generation, generation_of_job(session))
        .group_by(Job.question_id)
    )
    if run_id is not None:
        stmt = stmt.where(Job.run_id == run_id)
    return stmt.subquery("difficulty")


def text_match(session: Session, column: Any, text: str) -> ColumnElement[bool]:
    """Case-insensitive substring match: SQLite's LIKE already is; PostgreSQL needs ILIKE."""
    if session.get_bind().dialect.name == "sqlite":
        return column.contains(text, autoescape=True)  # type: ignore[no-any-return]
    return column.icontains(text, autoescape=True)  # type: ignore[no-any-return]


def _where(session: Session, filters: ChainFilters) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if filters.run is not None:
        where.append(Job.run_id == filters.run)
    if filters.subject is not None:
        where.append(Question.subject == filters.subject)
    if filters.outcome is not None:
        where.append(Generation.outcome == filters.outcome)
    if filters.finish is not None:
        if filters.finish == "none":
            where.append(Generation.finish_reason.is_(None))
        else:
            where.append(Generation.finish_reason == filters.finish)
    return where


def _order(filters: ChainFilters, difficulty: Any) -> list[Any]:
    by: dict[Sort, list[Any]] = {
        Sort.newest: [Generation.id.desc()],
        Sort.oldest: [Generation.id.asc()],
        Sort.longest: [Generation.completion_tokens.desc().nulls_last(), Generation.id.desc()],
        Sort.shortest: [Generation.completion_tokens.asc().nulls_last(), Generation.id.asc()],
        Sort.slowest: [Generation.latency_s.desc(), Generation.id.desc()],
        Sort.fastest: [Generation.latency_s.asc(), Generation.id.asc()],
    }
    if filters.sort is Sort.hardest:
        return [difficulty.c.difficulty.desc(), Generation.id.desc()]
    if filters.sort is Sort.easiest:
        return [difficulty.c.difficulty.asc(), Generation.id.asc()]
    return by[filters.sort]


SEARCHED = (Question.question, Generation.reasoning)


def _filtered(
    session: Session,
    stmt: Select[Any],
    filters: ChainFilters,
    *,
    search: tuple[Any, ...] = SEARCHED,
) -> tuple[Select[Any], Any]:
    """`stmt` (over generations) with the filters applied, joining only the tables they need:
    an unfiltered count or page reads the generations' indexes alone. A text search matches
    any of the `search` columns."""
    needs_job = filters.run is not None or filters.subject is not None or filters.needs_difficulty
    needs_question = filters.subject is not None or (
        bool(filters.q) and any(column is Question.question for column in search)
    )
    if needs_job or needs_question:
        stmt = stmt.join(Job, Job.id == Generation.job_id)
    if needs_question:
        stmt = stmt.join(Question, Question.id == Job.question_id)
    difficulty = None
    if filters.needs_difficulty:
        difficulty = difficulty_by_question(session, run_id=filters.run)
        stmt = stmt.join(difficulty, difficulty.c.qid == Job.question_id)
        if filters.dmin is not None:
            stmt = stmt.where(difficulty.c.difficulty >= filters.dmin - 1e-9)
        if filters.dmax is not None:
            stmt = stmt.where(difficulty.c.difficulty <= filters.dmax + 1e-9)
    where = _where(session, filters)
    if filters.q:
        where.append(or_(*(text_match(session, column, filters.q) for column in search)))
    return stmt.where(*where), difficulty


def _chosen(session: Session, filters: ChainFilters, *, offset: int, limit: int) -> Select[Any]:
    """The ids of a page, in order.

    A text search matches the question or the chain. On PostgreSQL it is asked as two queries,
    one per column, each ordered and cut to the page's end, then merged: with one condition on
    one table each, the planner can choose per word between reading chains from the top of the
    order until a page is full (a common word) and finding them through migration 0006's
    trigram index (a rare one, which otherwise means reading every chain). An OR across the two
    tables would leave it only the first, which is all SQLite has (no such index): there the
    one query with the OR reads the chains once, not twice."""
    ids = select(Generation.id).select_from(Generation)
    if not filters.q or session.get_bind().dialect.name == "sqlite":
        chosen, difficulty = _filtered(session, ids, filters)
        return chosen.order_by(*_order(filters, difficulty)).limit(limit).offset(offset)
    halves = []
    for column in SEARCHED:
        half, difficulty = _filtered(session, ids, filters, search=(column,))
        top = half.order_by(*_order(filters, difficulty)).limit(offset + limit).subquery()
        halves.append(select(top.c.id))
    either = union(*halves).subquery()
    chosen, difficulty = _filtered(session, ids, filters.model_copy(update={"q": None}))
    chosen = chosen.where(Generation.id.in_(select(either.c.id)))
    return chosen.order_by(*_order(filters, difficulty)).limit(limit).offset(offset)


def list_chains(session: Session, *, filters: ChainFilters, per_page: int = PER_PAGE) -> ChainPage:
    """One page of generations. The page's ids are chosen first, on the filter and sort
    columns alone; only those rows are then read with their job and question ("deferred join":
    a deep OFFSET skips index entries, not joined rows)."""
    offset = (filters.page - 1) * per_page
    chosen = _chosen(session, filters, offset=offset, limit=per_page + 1)
    total = None
    if (filters.dmin is not None or filters.dmax is not None) and not filters.q:
        # A difficulty range is an aggregate over the whole selection: the count comes with
        # the page, from the same statement, rather than from computing it a second time.
        picked = session.execute(chosen.add_columns(func.count().over())).all()
        ids = [r[0] for r in picked]
        total = int(picked[0][1]) if picked else None
    else:
        ids = list(session.scalars(chosen))
    has_next = len(ids) > per_page
    ids = ids[:per_page]
    found = {
        r[0]: r
        for r in session.execute(
            select(
                Generation.id,
                Job.id,
                Job.run_id,
                Job.question_id,
                Job.sample_index,
                Question.subject,
                func.substr(Question.question, 1, PREVIEW_CHARS),
                Generation.outcome,
                Generation.finish_reason,
                Generation.completion_tokens,
                Generation.latency_s,
                Generation.predicted_letter,
                Job.choice_order,
                Question.answer_index,
            )
            .select_from(Generation)
            .join(Job, Job.id == Generation.job_id)
            .join(Question, Question.id == Job.question_id)
            .where(Generation.id.in_(ids))
        )
    }
    rows = [found[i] for i in ids if i in found]
    scores = difficulties(session, question_ids={r[3] for r in rows}, run_id=filters.run)
    if total is None and not filters.q:
        # Every generation has a difficulty (its own sample counts), so the count of a sort by
        # it is the count without it: one aggregate over the selection fewer.
        unsorted = filters.model_copy(update={"sort": Sort.newest})
        counted, _ = _filtered(session, select(func.count()).select_from(Generation), unsorted)
        total = int(session.scalar(counted) or 0)
    return ChainPage(
        rows=[
            ChainRow(
                generation_id=r[0],
                job_id=r[1],
                run_id=r[2],
                question_id=r[3],
                sample_index=r[4],
                subject=r[5],
                question=r[6],
                outcome=r[7],
                finish_reason=r[8],
                completion_tokens=r[9],
                latency_s=r[10],
                predicted=r[11],
                gold=_gold(r[12], r[13]),
                difficulty=scores.get(r[3]),
            )
            for r in rows
        ],
        page=filters.page,
        per_page=per_page,
        total=total,
        has_next=has_next,
    )


def _gold(order: list[int], answer_index: int) -> str:
    try:
        return gold_letter(tuple(order), answer_index)
    except ValueError:
        return "?"


def difficulties(
    session: Session, *, question_ids: set[int], run_id: int | None
) -> dict[int, float]:
    """Difficulty of the given questions only (an indexed lookup per question)."""
    if not question_ids:
        return {}
    correct = func.sum(case((Generation.outcome == Outcome.correct, 1), else_=0))
    stmt = (
        select(Job.question_id, correct, func.count())
        .select_from(Job)
        .join(Generation, Generation.job_id == Job.id)
        .where(Job.question_id.in_(sorted(question_ids)))
        .group_by(Job.question_id)
    )
    if run_id is not None:
        stmt = stmt.where(Job.run_id == run_id)
    return {qid: 1.0 - int(c) / int(n) for qid, c, n in session.execute(stmt) if n}


# What servers report (OpenAI's API, vLLM's "abort"); "none": a generation stored without one.
FINISH_REASONS = ("stop", "length", "abort", "content_filter", "tool_calls", "none")


def subjects(session: Session) -> list[str]:
    """Every subject, for the filter menu (from the subject index, not the table)."""
    return list(session.scalars(select(Question.subject).distinct().order_by(Question.subject)))
