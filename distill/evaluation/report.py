"""What an eval run's stored replies say, each share with its 95 % Wilson interval; and two runs
compared on the questions both answered, with the exact McNemar test (paired: the same
question answered by both is what makes a small difference detectable)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from distill.errors import UserError
from distill.evaluation.stats import mcnemar_exact, questions_for, wilson
from distill.models import EvalItem, EvalRun
from schemas.eval import (
    CompareReport,
    EvalMode,
    EvalReport,
    Interval,
    PairedTest,
    Percentiles,
    SubjectDelta,
)

# Accuracy intervals wider than this draw a warning, with the number of questions it would take.
TARGET_HALF_WIDTH = 0.03


def correct(item: EvalItem, budget: float | None) -> bool:
    in_time = budget is None or (item.latency_s is not None and item.latency_s <= budget)
    return item.letter is not None and item.letter == item.gold and in_time


def terminated(item: EvalItem, mode: str) -> bool:
    """The model ended its answer itself: the think block closed (reasoning mode), then its own
    end-of-turn."""
    return item.finish_reason == "stop" and (mode == "direct" or item.closed)


def load(session: Session, eval_id: int) -> tuple[EvalRun, list[EvalItem]]:
    run = session.get(EvalRun, eval_id)
    if run is None:
        raise UserError(f"no eval run {eval_id} (`distill eval --list` shows them)")
    items = list(
        session.scalars(
            select(EvalItem).where(EvalItem.eval_run_id == eval_id).order_by(EvalItem.id)
        )
    )
    return run, items


def report(run: EvalRun, items: Sequence[EvalItem]) -> EvalReport:
    n = len(items)
    budget = run.budget_seconds
    right = sum(correct(i, budget) for i in items)
    accuracy = wilson(right, n)
    by_subject: dict[str, list[EvalItem]] = defaultdict(list)
    for item in items:
        by_subject[item.subject].append(item)
    warnings = []
    if n < run.questions:
        warnings.append(
            f"unfinished: {n} of {run.questions} questions answered; run the same command to "
            "continue"
        )
    if n and accuracy.half_width > TARGET_HALF_WIDTH:
        need = questions_for(TARGET_HALF_WIDTH, accuracy.value or 0.0)
        warnings.append(
            f"accuracy is ± {accuracy.half_width:.1%} at 95 % over {n} questions; "
            f"± {TARGET_HALF_WIDTH:.0%} takes about {need:,} at this accuracy"
        )
    mode: EvalMode = "direct" if run.mode == "direct" else "reasoning"
    return EvalReport(
        eval_id=run.id,
        name=run.name,
        model=run.model,
        url=run.url,
        data=run.data,
        split=run.split,
        mode=mode,
        questions=run.questions,
        answered=n,
        finished=run.finished_at is not None,
        refused=sum(i.error is not None for i in items),
        accuracy=accuracy,
        closed=wilson(sum(i.closed for i in items), n) if run.mode == "reasoning" else None,
        stopped=wilson(sum(i.finish_reason == "stop" for i in items), n),
        cut=wilson(sum(i.finish_reason == "length" for i in items), n),
        terminated=wilson(sum(terminated(i, run.mode) for i in items), n),
        no_answer=wilson(sum(i.letter is None for i in items), n),
        over_budget=(
            wilson(sum(_over(i, budget) for i in items), n) if budget is not None else None
        ),
        budget_seconds=budget,
        per_subject={
            subject: wilson(sum(correct(i, budget) for i in group), len(group))
            for subject, group in sorted(by_subject.items())
        },
        completion_tokens=_percentiles([i.completion_tokens for i in items]),
        latency_s=_percentiles([i.latency_s for i in items]),
        warnings=warnings,
    )


def compare(
    a: tuple[EvalRun, Sequence[EvalItem]], b: tuple[EvalRun, Sequence[EvalItem]]
) -> CompareReport:
    (run_a, items_a), (run_b, items_b) = a, b
    by_question_a = {i.question_id: i for i in items_a}
    by_question_b = {i.question_id: i for i in items_b}
    common = sorted(by_question_a.keys() & by_question_b.keys())
    if not common:
        raise UserError(f"eval runs {run_a.id} and {run_b.id} share no question")
    pairs = [(by_question_a[q], by_question_b[q]) for q in common]
    warnings = []
    if run_a.split != run_b.split or run_a.fingerprint != run_b.fingerprint:
        warnings.append(
            f"different question sets ({run_a.split} of {run_a.data} vs {run_b.split} of "
            f"{run_b.data}): compared on the {len(common)} questions both answered"
        )
    accuracy = _paired(
        [correct(x, run_a.budget_seconds) for x, _ in pairs],
        [correct(y, run_b.budget_seconds) for _, y in pairs],
    )
    ended = _paired(
        [terminated(x, run_a.mode) for x, _ in pairs],
        [terminated(y, run_b.mode) for _, y in pairs],
    )
    subjects: dict[str, list[tuple[EvalItem, EvalItem]]] = defaultdict(list)
    for x, y in pairs:
        subjects[x.subject].append((x, y))
    per_subject = []
    for subject, group in sorted(subjects.items()):
        share_a = sum(correct(x, run_a.budget_seconds) for x, _ in group) / len(group)
        share_b = sum(correct(y, run_b.budget_seconds) for _, y in group) / len(group)
        per_subject.append(
            SubjectDelta(
                subject=subject, n=len(group), a=share_a, b=share_b, delta=share_b - share_a
            )
        )
    return CompareReport(
        a=run_a.id,
        b=run_b.id,
        a_label=run_a.name or run_a.model,
        b_label=run_b.name or run_b.model,
        common=len(common),
        accuracy=accuracy,
        terminated=ended,
        per_subject=per_subject,
        warnings=warnings,
    )


def _paired(a: Sequence[bool], b: Sequence[bool]) -> PairedTest:
    only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    share_a, share_b = wilson(sum(a), len(a)), wilson(sum(b), len(b))
    return PairedTest(
        a=share_a,
        b=share_b,
        delta=(share_b.value or 0.0) - (share_a.value or 0.0),
        only_a=only_a,
        only_b=only_b,
        p_value=mcnemar_exact(only_a, only_b),
    )


def _over(item: EvalItem, budget: float) -> bool:
    return item.latency_s is not None and item.latency_s > budget


def _percentiles(values: Sequence[float | int | None]) -> Percentiles:
    known = sorted(float(v) for v in values if v is not None)
    if not known:
        return Percentiles(p50=None, p95=None, max=None)
    import numpy as np

    p50, p95 = np.percentile(known, [50, 95])
    return Percentiles(p50=float(p50), p95=float(p95), max=known[-1])


__all__ = ["Interval", "compare", "correct", "load", "report", "terminated"]
