"""The query functions behind the pages: filters narrow, sorts order, pages page, and the
export preview is export's own funnel."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from distill.export import export_dataset
from distill.models import Generation, Job, Outcome, Question
from distill.ui.queries.chains import ChainFilters, Sort, list_chains
from distill.ui.queries.preview import PreviewRequest, compute_preview
from distill.ui.queries.runs import lengths_and_throughput, list_runs, run_detail
from schemas.export_options import ExportFormat, ExportOptions, OutputKind, PerQuestion
from tests.ui.seed import Seeded


def _chains(engine: Engine, **filters: object) -> list[int]:
    with Session(engine) as s:
        page = list_chains(s, filters=ChainFilters.model_validate(filters), per_page=500)
        return [r.generation_id for r in page.rows]


def test_filters_narrow_the_list(engine: Engine, seeded: Seeded) -> None:
    everything = _chains(engine)
    assert len(everything) == seeded.generations
    truncated = _chains(engine, outcome="truncated")
    assert sorted(truncated) == sorted(seeded.truncated_generations)
    assert set(_chains(engine, finish="length")) == set(truncated)
    run_b = _chains(engine, run=seeded.runs[1])
    assert seeded.long_generation in run_b and len(run_b) == 3
    math_correct = _chains(engine, subject="math", outcome="correct")
    assert seeded.script_generation in math_correct
    assert set(math_correct) < set(_chains(engine, subject="math"))
    assert _chains(engine, subject="nosuch") == []


def test_text_search_reads_questions_and_chains(engine: Engine, seeded: Seeded) -> None:
    assert _chains(engine, q="<SCRIPT>alert") == [seeded.script_generation]  # any case
    assert seeded.script_generation in _chains(engine, q='onerror="alert(3)')  # the question
    assert _chains(engine, q="100%_no_such") == []  # LIKE's wildcards are literal
    with Session(engine) as s:
        page = list_chains(s, filters=ChainFilters(q="energy"))
    assert page.total is None and page.rows  # a search is not counted


@pytest.mark.parametrize("sort", list(Sort))
@pytest.mark.parametrize("q", ["energy", "onerror", "e"])
def test_a_search_pages_through_its_question_and_chain_matches_in_order(
    engine: Engine, seeded: Seeded, sort: Sort, q: str
) -> None:
    """A search is two queries merged (one per column): page by page it is exactly the
    unsearched list, in its order, cut to the generations whose question or chain holds q."""
    with Session(engine) as s:
        everything = list_chains(s, filters=ChainFilters(sort=sort), per_page=500).rows
        questions = {
            i: text
            for i, text in s.execute(
                select(Generation.id, Question.question)
                .join(Job, Job.id == Generation.job_id)
                .join(Question, Question.id == Job.question_id)
            )
        }
        chains = {i: text for i, text in s.execute(select(Generation.id, Generation.reasoning))}
        expected = [
            r.generation_id
            for r in everything
            if q.casefold() in questions[r.generation_id].casefold()
            or q.casefold() in (chains[r.generation_id] or "").casefold()
        ]
        found: list[int] = []
        page = 1
        while True:
            listed = list_chains(s, filters=ChainFilters(q=q, sort=sort, page=page), per_page=3)
            found += [r.generation_id for r in listed.rows]
            if not listed.has_next:
                break
            page += 1
    assert expected and found == expected


def test_sorts(engine: Engine, seeded: Seeded) -> None:
    with Session(engine) as s:
        longest = list_chains(s, filters=ChainFilters(sort=Sort.longest)).rows
        assert longest[0].generation_id == seeded.long_generation
        tokens = [r.completion_tokens for r in longest if r.completion_tokens is not None]
        assert tokens == sorted(tokens, reverse=True)
        hardest = list_chains(s, filters=ChainFilters(sort=Sort.hardest), per_page=500).rows
        values = [r.difficulty for r in hardest]
        assert values == sorted(values, key=lambda v: -(v or 0.0))
        newest = list_chains(s, filters=ChainFilters()).rows
        assert [r.generation_id for r in newest] == sorted(
            (r.generation_id for r in newest), reverse=True
        )


def test_difficulty_range(engine: Engine, seeded: Seeded) -> None:
    with Session(engine) as s:
        rows = list_chains(s, filters=ChainFilters(dmin=0.5, dmax=1.0), per_page=500).rows
        assert rows and all(r.difficulty is not None and r.difficulty >= 0.5 for r in rows)
        easy = list_chains(s, filters=ChainFilters(dmax=0.0), per_page=500).rows
        assert easy and all(r.difficulty == 0.0 for r in easy)
        assert not {r.generation_id for r in rows} & {r.generation_id for r in easy}


def test_pages(engine: Engine, seeded: Seeded) -> None:
    with Session(engine) as s:
        first = list_chains(s, filters=ChainFilters(), per_page=10)
        second = list_chains(s, filters=ChainFilters(page=2), per_page=10)
        last = list_chains(s, filters=ChainFilters(page=first.pages or 1), per_page=10)
    assert first.total == seeded.generations and first.has_next
    assert not {r.generation_id for r in first.rows} & {r.generation_id for r in second.rows}
    assert not last.has_next and last.rows


def test_runs_and_run_detail(engine: Engine, seeded: Seeded) -> None:
    run_a, run_b, run_c = seeded.runs
    with Session(engine) as s:
        rows = {r.id: r for r in list_runs(s)}
        assert list(rows) == [run_c, run_b, run_a]  # newest first
        assert rows[run_b].jobs == {"queued": 2, "running": 1, "done": 3, "failed": 1}
        assert rows[run_a].outcomes[Outcome.truncated.value] > 0
        detail = run_detail(s, run_id=run_a)
        assert detail is not None
        assert [sub.subject for sub in detail.subjects] == ["history", "math"]
        assert sum(detail.lengths.counts) == detail.run.graded
        assert detail.throughput and all(y >= 0 for _, y in detail.throughput)
        total = sum(y * detail.bucket_s for _, y in detail.throughput)
        tokens = sum(sum(sub.outcomes.values()) for sub in detail.subjects)
        assert total > 0 and tokens == detail.run.graded
        assert run_detail(s, run_id=999) is None
        histogram, _, _ = lengths_and_throughput(s, run_id=run_b)
        assert histogram.counts[-1] == 1  # the 20,000-token chain, at its budget


@pytest.mark.parametrize("per_question", ["best", "all"])
def test_the_preview_is_the_export_funnel(
    engine: Engine, seeded: Seeded, tmp_path: Path, per_question: str
) -> None:
    run_a = seeded.runs[0]
    preview = compute_preview(
        engine, request=PreviewRequest(runs=(run_a,), per_question=PerQuestion(per_question))
    )
    assert preview.error is None
    manifest = export_dataset(
        options=ExportOptions(
            format=ExportFormat.both,
            out=tmp_path / "out",
            to=OutputKind.jsonl,
            runs=(run_a,),
            per_question=PerQuestion(per_question),
        ),
        engine=engine,
    )
    assert preview.question_funnel == manifest.question_funnel
    for fmt, output in manifest.outputs.items():
        shown = preview.formats[str(fmt)]
        assert shown.funnel == output.funnel
        assert sum(shown.records.values()) == output.records
        for split, stats in output.splits.items():
            shown_letters = {k: v for k, v in shown.letters[str(split)].items() if v}
            assert shown_letters == {k: v for k, v in stats.letters.items() if v}


def test_an_empty_selection_says_why(engine: Engine, seeded: Seeded) -> None:
    preview = compute_preview(engine, request=PreviewRequest(subjects=("nosuch",)))
    assert preview.error and "no finished generations" in preview.error
