"""Deciding what gets exported, from small columns only: which generations survive each filter
(counted, so the dataset card's table adds up), which questions are in which split, which chain
represents a question, how records are ordered. No text is built here; `write` does that."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from distill.choices import OptionOrder, gold_letter
from distill.errors import UserError
from distill.export.balance import choose_balanced, rebalance_direct, subsample_balanced
from distill.export.curriculum import order_train, order_validation, score
from distill.export.dedupe import EvalIndex, near_duplicates
from distill.export.funnel import (
    BAD_ORDER,
    BALANCE_SUBSAMPLED,
    CHAIN_LABELS,
    CONTAMINATED,
    FIX_STRAY,
    FIX_TRAILING,
    GENERATIONS,
    LETTER_MISMATCH,
    MOVED_REFERENCE,
    NEAR_DUPLICATE,
    NO_TOKEN_COUNT,
    NOT_A_RESULT,
    NOT_BEST,
    NOT_CLOSED,
    NOT_STOPPED,
    OUTCOME_LABELS,
    QUESTIONS,
    SUPERSEDED,
    TOO_LONG,
    Funnel,
)
from distill.export.items import Difficulty, PlannedRecord
from distill.export.records import ChainDrop
from distill.export.select import QuestionRow, SampleRow
from distill.export.splits import assign_splits, default_val_size
from distill.models import Outcome
from distill.teacher.grading import is_result
from schemas.export import ExportOptions, Format, FunnelStep, PerQuestion, Split


@dataclass(slots=True)
class ChainInfo:
    """A correct chain after `clean_chain`: kept facts, not its text."""

    drop: ChainDrop | None
    chars: int = 0
    stray_markers: int = 0
    trailing_lines: int = 0
    reasoning_tokens: int | None = None  # exact, with --tokenizer
    content_tokens: int | None = None  # exact, the whole assistant turn


@dataclass(slots=True)
class LoadedData:
    questions: dict[int, QuestionRow]
    samples: list[SampleRow]  # finished, in the selected runs (lineage followed)
    chains: dict[int, ChainInfo]  # generation id -> chain facts; reasoning exports only
    exact_tokens: bool = False


@dataclass(slots=True)
class FormatPlan:
    fmt: Format
    train: list[PlannedRecord]
    validation: list[PlannedRecord]
    funnel: list[FunnelStep]
    balance: str
    fixes: dict[str, int] = field(default_factory=dict)

    def by_split(self) -> dict[Split, list[PlannedRecord]]:
        return {Split.train: self.train, Split.validation: self.validation}


@dataclass(slots=True)
class ExportPlan:
    question_funnel: list[FunnelStep]
    questions: dict[Split, int]
    superseded: int
    referring: dict[str, int]  # order rule -> questions of the pool (free ones not counted)
    teacher_models: list[str]
    prompt_versions: list[str]
    formats: dict[Format, FormatPlan]
    warnings: list[str]


def newest_samples(samples: Sequence[SampleRow]) -> tuple[list[SampleRow], int]:
    """Per (question, teacher, prompt version, sample index) the newest finished job: a truncated
    sample retried with a bigger budget counts once, as the retry. Returns (current, superseded)."""
    newest: dict[tuple[int, str, str, int], SampleRow] = {}
    for sample in samples:
        held = newest.get(sample.sample_key)
        if held is None or sample.job_id > held.job_id:
            newest[sample.sample_key] = sample
    current = sorted(newest.values(), key=lambda s: s.generation_id)
    return current, len(samples) - len(current)


def _fits(sample: SampleRow, question: QuestionRow) -> bool:
    return sorted(sample.choice_order) == list(range(len(question.choices)))


def _remove(
    funnel: Funnel, label: str, rows: list[SampleRow], gone: Callable[[SampleRow], bool]
) -> list[SampleRow]:
    kept = [s for s in rows if not gone(s)]
    funnel.remove(label, len(rows) - len(kept))
    return kept


def build_plan(
    data: LoadedData, *, options: ExportOptions, eval_index: EvalIndex | None
) -> ExportPlan:
    gen = Funnel(GENERATIONS, len(data.samples))
    current, superseded = newest_samples(data.samples)
    gen.remove(SUPERSEDED, superseded)
    current = _remove(
        gen, BAD_ORDER, current, lambda s: not _fits(s, data.questions[s.question_id])
    )
    current = _remove(gen, NOT_A_RESULT, current, lambda s: not is_result(s.finish_reason))
    current = _remove(
        gen,
        MOVED_REFERENCE,
        current,
        lambda s: not data.questions[s.question_id].rule.allows(s.choice_order),
    )

    by_question: dict[int, list[SampleRow]] = defaultdict(list)
    for sample in current:
        by_question[sample.question_id].append(sample)
    qfunnel = Funnel(QUESTIONS, len(by_question))
    questions = data.questions
    near = near_duplicates(
        (qid, questions[qid].question, questions[qid].choices) for qid in by_question
    )
    qfunnel.remove(NEAR_DUPLICATE, len(near))
    contaminated = (
        {
            qid
            for qid in by_question
            if qid not in near
            and eval_index.contains(questions[qid].question, questions[qid].choices)
        }
        if eval_index is not None
        else set()
    )
    current = _remove(gen, NEAR_DUPLICATE, current, lambda s: s.question_id in near)
    if eval_index is not None:
        qfunnel.remove(CONTAMINATED, len(contaminated))
        current = _remove(gen, CONTAMINATED, current, lambda s: s.question_id in contaminated)
    pool = sorted(qid for qid in by_question if qid not in near and qid not in contaminated)
    if not pool:
        raise UserError(
            f"no questions left to export: {len(near)} near-duplicates and "
            f"{len(contaminated)} found in eval sets out of {len(by_question)}"
        )
    difficulty = {qid: score(by_question[qid]) for qid in pool}
    splits = assign_splits(
        [(questions[q].uid, questions[q].subject) for q in pool],
        val_size=options.val_size,
        seed=options.seed,
    )
    warnings = _warnings(current, options, len(pool), splits)
    formats: dict[Format, FormatPlan] = {}
    for fmt in options.formats():
        if fmt is Format.direct:
            formats[fmt] = _plan_direct(
                pool, by_question, questions, difficulty, splits, qfunnel, options
            )
        else:
            formats[fmt] = _plan_reasoning(current, data, difficulty, splits, gen, options)
    split_counts = {s: sum(1 for v in splits.values() if v is s) for s in Split}
    return ExportPlan(
        question_funnel=qfunnel.steps,
        questions=split_counts,
        superseded=superseded,
        referring={
            str(kind): n
            for kind, n in sorted(Counter(questions[q].rule.kind for q in pool).items())
            if kind is not OptionOrder.free
        },
        teacher_models=sorted({s.teacher_model for s in current}),
        prompt_versions=sorted({s.prompt_version for s in current}),
        formats=formats,
        warnings=warnings,
    )


def _warnings(
    current: Sequence[SampleRow], options: ExportOptions, pool: int, splits: dict[str, Split]
) -> list[str]:
    warnings = []
    teachers = sorted({s.teacher_model for s in current})
    if len(teachers) > 1:
        warnings.append(
            f"chains of {len(teachers)} teacher models are mixed ({', '.join(teachers)}); "
            "pass --teacher-model to export one"
        )
    versions = sorted({s.prompt_version for s in current})
    if len(versions) > 1:
        warnings.append(f"samples of several prompt versions are mixed: {', '.join(versions)}")
    validation = sum(1 for v in splits.values() if v is Split.validation)
    if options.val_size is not None and validation < default_val_size(pool) // 2:
        warnings.append(
            f"validation holds only {validation} questions (the default would be "
            f"{default_val_size(pool)}): too few to compare students reliably"
        )
    return warnings


def _finish(
    fmt: Format,
    records: list[PlannedRecord],
    funnel: list[FunnelStep],
    balance: str,
    options: ExportOptions,
    fixes: dict[str, int] | None = None,
) -> FormatPlan:
    train = [r for r in records if r.split is Split.train]
    validation = order_validation([r for r in records if r.split is Split.validation])
    ordered = order_train(train, mode=options.curriculum, seed=options.seed, stages=options.stages)
    return FormatPlan(fmt, ordered, validation, funnel, balance, fixes or {})


def _plan_direct(
    pool: list[int],
    by_question: dict[int, list[SampleRow]],
    questions: dict[int, QuestionRow],
    difficulty: dict[int, Difficulty],
    splits: dict[str, Split],
    qfunnel: Funnel,
    options: ExportOptions,
) -> FormatPlan:
    records = []
    for qid in pool:
        question = questions[qid]
        # The prompt the teacher saw for its first sample of this question.
        first = min(by_question[qid], key=lambda s: (s.sample_index, s.job_id))
        records.append(
            PlannedRecord(
                record_id=f"{question.uid[:16]}-d",
                question=question,
                split=splits[question.uid],
                order=first.choice_order,
                difficulty=difficulty[qid],
            )
        )
    if options.balance_for(Format.direct):
        moved = rebalance_direct(records, seed=options.seed)
        balance = (
            f"options re-permuted in {moved} of {len(records)} records for uniform gold letters "
            "per split and option count"
        )
    else:
        balance = "off: gold letters as the teacher saw them (--no-balance)"
    return _finish(Format.direct, records, list(qfunnel.steps), balance, options)


def _plan_reasoning(
    current: list[SampleRow],
    data: LoadedData,
    difficulty: dict[int, Difficulty],
    splits: dict[str, Split],
    gen_funnel: Funnel,
    options: ExportOptions,
) -> FormatPlan:
    funnel = gen_funnel.copy()
    rows = current
    for outcome, label in OUTCOME_LABELS.items():
        rows = _remove(funnel, label, rows, _has_outcome(outcome))
    rows = _remove(funnel, NOT_STOPPED, rows, lambda s: s.finish_reason != "stop")
    rows = _remove(funnel, NOT_CLOSED, rows, lambda s: not s.closed)
    questions = data.questions
    rows = _remove(
        funnel,
        LETTER_MISMATCH,
        rows,
        lambda s: (
            s.predicted_letter != gold_letter(s.choice_order, questions[s.question_id].answer_index)
        ),
    )
    for drop, label in CHAIN_LABELS.items():
        rows = _remove(funnel, label, rows, _chain_dropped(data.chains, drop))

    def planned(sample: SampleRow) -> PlannedRecord:
        question, chain = questions[sample.question_id], data.chains[sample.generation_id]
        exact = data.exact_tokens
        return PlannedRecord(
            record_id=f"{question.uid[:16]}-g{sample.generation_id}",
            question=question,
            split=splits[question.uid],
            order=sample.choice_order,
            difficulty=difficulty[sample.question_id],
            generation_id=sample.generation_id,
            chain_tokens=chain.reasoning_tokens if exact else sample.completion_tokens,
            chain_chars=chain.chars,
            reasoning_tokens=chain.reasoning_tokens if exact else None,
            completion_tokens=chain.content_tokens if exact else sample.completion_tokens,
        )

    records = [planned(s) for s in rows]
    limit = options.max_reasoning_tokens
    if limit is not None:
        records = _drop_records(funnel, NO_TOKEN_COUNT, records, lambda r: r.chain_tokens is None)
        records = _drop_records(funnel, TOO_LONG, records, lambda r: (r.chain_tokens or 0) > limit)
    records, balance = _pick(records, funnel, options)
    chosen = {r.generation_id for r in records}
    picked = [data.chains[s.generation_id] for s in rows if s.generation_id in chosen]
    fixes = {
        FIX_STRAY: sum(1 for c in picked if c.stray_markers),
        FIX_TRAILING: sum(1 for c in picked if c.trailing_lines),
    }
    return _finish(Format.reasoning, records, funnel.steps, balance, options, fixes)


def _has_outcome(outcome: Outcome) -> Callable[[SampleRow], bool]:
    return lambda s: s.outcome is outcome


def _chain_dropped(chains: dict[int, ChainInfo], drop: ChainDrop) -> Callable[[SampleRow], bool]:
    # A chain the cleaning pass never saw (a row written between the two reads) counts as empty.
    missing = ChainInfo(drop=ChainDrop.empty)
    return lambda s: chains.get(s.generation_id, missing).drop is drop


def _drop_records(
    funnel: Funnel, label: str, records: list[PlannedRecord], gone: Callable[[PlannedRecord], bool]
) -> list[PlannedRecord]:
    kept = [r for r in records if not gone(r)]
    funnel.remove(label, len(records) - len(kept))
    return kept


def _preference(record: PlannedRecord) -> tuple[bool, int, int, int]:
    """Shortest chain first: by tokens when known, then characters, then generation id."""
    return (
        record.chain_tokens is None,
        record.chain_tokens or 0,
        record.chain_chars,
        record.generation_id or 0,
    )


def _pick(
    records: list[PlannedRecord], funnel: Funnel, options: ExportOptions
) -> tuple[list[PlannedRecord], str]:
    balance = options.balance_for(Format.reasoning)
    if options.per_question is PerQuestion.best:
        grouped: dict[str, list[PlannedRecord]] = defaultdict(list)
        for record in records:
            grouped[record.question.uid].append(record)
        candidates = [sorted(group, key=_preference) for _, group in sorted(grouped.items())]
        if balance:
            chosen = choose_balanced(candidates, seed=options.seed)
            note = (
                "on: per question, the correct chain whose gold letter is rarest so far "
                "(chains are never re-permuted: they name options by letter)"
            )
        else:
            chosen = [c[0] for c in candidates]
            note = "report only: chains are never re-permuted (they name options by letter)"
        funnel.remove(NOT_BEST, len(records) - len(chosen))
        return chosen, note
    if balance:
        kept, dropped = subsample_balanced(records, seed=options.seed)
        funnel.remove(BALANCE_SUBSAMPLED, dropped)
        return kept, "on: every gold letter subsampled to the rarest, per split and option count"
    return records, "report only: chains are never re-permuted (they name options by letter)"
