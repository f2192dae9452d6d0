"""The dataset card (README.md) of one exported format. Every number comes from the manifest, so
card, manifest and data agree; the filter table's rows add up (remaining = previous - removed)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from distill.export.plots import DIFFICULTY, LENGTHS, LETTERS_PNG
from schemas.export import (
    ExportManifest,
    Format,
    FormatManifest,
    FunnelStep,
    OutputKind,
    TemplateMode,
)

_SPLITS = ("train", "validation")

_INTRO = {
    Format.reasoning: (
        "Each record is one correct chain of thought of the teacher: the assistant turn is "
        "`{open}`, the chain, `{close}`, then one answer line (`{answer}`) and nothing after it."
    ),
    Format.direct: (
        "Each record is one question with the answer alone: the assistant turn is the answer "
        "line (`{answer}`) with the gold letter."
    ),
}

_COLUMNS = {
    "id": "record id (question uid prefix + generation id, or `-d` for direct)",
    "question_id": "the question's uid (sha256 of its normalised text and options)",
    "subject": "subject of the question",
    "messages": "the conversation, user turn then assistant turn (TRL conversational format)",
    "prompt": "the user turn alone (TRL prompt-completion format)",
    "completion": "the assistant turn alone (TRL prompt-completion format)",
    "answer": "gold letter, in the option order this record's prompt shows",
    "difficulty": "1 - the teacher's pass rate over the question's samples (0 easy, 1 hard)",
    "curriculum_rank": "position in the curriculum order of train; empty in validation",
    "stage": "curriculum stage (difficulty quantile); empty in validation",
    "reasoning_content": "the chain alone, without markers or answer line",
    "reasoning_tokens": "tokens of the chain (only with --tokenizer)",
    "completion_tokens": "tokens of the completion: teacher-reported, or exact with --tokenizer",
    "text": "the whole conversation pre-rendered for the student's template, chain included",
}

_SAFE_TEMPLATES = """\
Some chat templates drop the chain when they render an assistant turn. Checked shapes:

| template shape | `messages` with the think block in `content` | chain in `reasoning_content` |
|---|---|---|
| ChatML / Llama 3 / most instruct templates (render `content` verbatim) | safe | ignored |
| DeepSeek-R1-Distill (keeps only what follows the close marker) | **chain lost** | use `text` |
| Qwen3-style (reads `reasoning_content`) | depends on the version | safe |

Name the student's tokenizer directory with `--student-template DIR` and the export checks it and
picks the shape that keeps the chain (think block in `content`, `reasoning_content`, or a
pre-rendered `text` column)."""


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def funnel_table(steps: Sequence[FunnelStep]) -> list[str]:
    """The filter steps that removed something, then the filters that removed nothing: every
    `remaining` is the row above minus `removed`."""
    rows: list[tuple[str, str, int]] = [(steps[0].step, "", steps[0].remaining)]
    rows += [(s.step, str(s.removed), s.remaining) for s in steps[1:] if s.removed]
    lines = _table(("step", "removed", "remaining"), rows)
    idle = [s.step for s in steps[1:] if not s.removed]
    if idle:
        lines += ["", "Checked, nothing removed: " + "; ".join(idle) + "."]
    return lines


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f} %" if total else "-"


def _front_matter(fmt: FormatManifest, kind: OutputKind) -> list[str]:
    if kind is OutputKind.disk:
        return []
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in _SPLITS:
        lines += [f"  - split: {split}", f"    path: {split}.{kind.value}"]
    return [*lines, "---", ""]


def _loading(fmt: FormatManifest, kind: OutputKind) -> list[str]:
    # Relative to this card's directory: the card holds no output path, so that the same
    # database and options give the same bytes wherever they are written.
    if kind is OutputKind.disk:
        load = (
            "from datasets import load_from_disk\n"
            'ds = load_from_disk(".")  # the directory of this README.md'
        )
    else:
        builder = "json" if kind is OutputKind.jsonl else "parquet"
        files = ", ".join(f'"{s}": "{s}.{kind.value}"' for s in _SPLITS)
        load = (
            "from datasets import load_dataset\n"
            "# paths relative to the directory of this README.md\n"
            f'ds = load_dataset("{builder}", data_files={{{files}}})'
        )
    return [
        "## Loading",
        "",
        "Run from the directory that holds this card (or put its path in front):",
        "",
        "```python",
        load,
        "```",
        "",
        'Give TRL one record shape: `ds.select_columns(["prompt", "completion"])` (loss on '
        'the completion only), `["messages"]`, or `["text"]` when this export has a `text` '
        "column; with several present, TRL picks one itself.",
        "",
        "`train` is in curriculum order and trainers shuffle by default: keep the order with "
        '`TrainingArguments(train_sampling_strategy="sequential")` (transformers >= 5.2) or a '
        "Trainer whose `_get_train_sampler` returns a `SequentialSampler`, and no packing that "
        "sorts by length. `curriculum_rank` restores the order after any shuffle.",
        "",
    ]


_BOS_NOTES = {
    True: "`text` starts without the template's BOS token: trainers tokenize a `text` column "
    "with the tokenizer's special tokens (TRL's SFTTrainer does), and this tokenizer adds BOS "
    "itself, so the model sees one, as at inference.",
    False: "`text` starts as the template renders it: this tokenizer adds no BOS of its own when "
    "trainers tokenize the column (TRL's SFTTrainer uses the tokenizer's special tokens).",
    None: "`text` starts as the template renders it; the tokenizer directory did not say whether "
    "the tokenizer adds BOS itself (no tokenizer.json, no `add_bos_token`). If it does, tokenize "
    "`text` without special tokens (`add_special_tokens=False`), or the model trains on two.",
}


def _referring(counts: dict[str, int]) -> list[str]:
    fixed, anchored = counts.get("fixed", 0), counts.get("anchored", 0)
    if not (fixed or anchored):
        return []
    return [
        f"Options that refer to other options: {fixed} question(s) keep their original option "
        'order (an option names others by letter, e.g. "Both A and B"), '
        f'{anchored} keep their "... of the above" options in place; the other options '
        "of the pool carry the balance.",
        "",
    ]


def render_card(manifest: ExportManifest, fmt: FormatManifest) -> str:
    options = manifest.options
    lines = _front_matter(fmt, manifest.to)
    teachers = ", ".join(f"`{t}`" for t in manifest.teacher_models) or "-"
    stages = f" in {options['stages']} stages" if options.get("stages") else ""
    lines += [
        f"# distill export: {fmt.format}",
        "",
        f"Distilled from {teachers} on multiple-choice questions (prompt version "
        f"{', '.join(manifest.prompt_versions) or '-'}), seed {manifest.seed}, curriculum "
        f"`{options.get('curriculum')}`{stages}.",
        "",
        _INTRO[fmt.format].format(
            open=options.get("think_open"),
            close=options.get("think_close"),
            answer=str(options.get("answer_template")).replace("{letter}", "X"),
        ),
        "",
    ]
    lines += _table(
        ("", *_SPLITS),
        [
            ("records", *(fmt.splits[s].records for s in _SPLITS)),
            ("questions", *(fmt.splits[s].questions for s in _SPLITS)),
        ],
    )
    lines += ["", "## How the rows were chosen", ""]
    if fmt.format is Format.reasoning:
        lines += ["Generations, one filter after another (the last row is what was written):", ""]
    else:
        lines += ["Questions, one filter after another (the last row is what was written):", ""]
    lines += funnel_table(fmt.funnel)
    lines += [
        "",
        f"Written: {fmt.records} = {fmt.splits['train'].records} train + "
        f"{fmt.splits['validation'].records} validation.",
        "",
    ]
    if fmt.format is Format.reasoning:
        lines += ["Questions in the pool (shared with the direct format):", ""]
        lines += funnel_table(manifest.question_funnel)
        lines.append("")
    if any(fmt.fixes.values()):
        lines += ["Repaired and kept:", ""]
        lines += [f"- {label}: {n}" for label, n in fmt.fixes.items() if n]
        lines.append("")
    if manifest.unfinished_jobs:
        pending = ", ".join(f"{n} {status}" for status, n in manifest.unfinished_jobs.items())
        lines += [
            f"Jobs of the selection not finished at export time (not counted above): {pending}.",
            "",
        ]
    lines += ["## Teacher and sampling", ""]
    lines += _table(
        ("run", "kind", "teacher", "prompt version", "samples / question", "parameters"),
        [
            (
                r.run_id,
                r.kind,
                f"`{r.teacher_model}`",
                r.prompt_version,
                r.samples_per_question,
                f"`{json.dumps(r.params, sort_keys=True)}`",
            )
            for r in manifest.runs
        ],
    )
    lines += ["", "## Subjects", ""]
    subjects = sorted({s for split in _SPLITS for s in fmt.splits[split].subjects})
    lines += _table(
        ("subject", *_SPLITS),
        [(s, *(fmt.splits[split].subjects.get(s, 0) for split in _SPLITS)) for s in subjects],
    )
    lines += ["", "## Gold letters", "", f"Balance: {fmt.balance}.", ""]
    lines += _referring(manifest.referring_options)
    letters = sorted({x for split in _SPLITS for x in fmt.splits[split].letters})
    lines += _table(
        ("letter", "train", "%", "validation", "%"),
        [
            (
                x,
                *(
                    cell
                    for split in _SPLITS
                    for cell in (
                        fmt.splits[split].letters.get(x, 0),
                        _pct(fmt.splits[split].letters.get(x, 0), fmt.splits[split].records),
                    )
                ),
            )
            for x in letters
        ],
    )
    lines += ["", f"![gold letters per split]({LETTERS_PNG})", "", "## Difficulty", ""]
    lines += [
        "Difficulty = 1 - the teacher's pass rate over a question's finished samples (a truncated "
        "sample counts as failed); ties are ordered by the length of the correct chains.",
        "",
    ]
    lines += _table(
        ("difficulty", *_SPLITS),
        [(f"{b.low:.1f}-{b.high:.1f}", b.train, b.validation) for b in fmt.difficulty_histogram],
    )
    lines += ["", f"![difficulty histogram]({DIFFICULTY})", ""]
    if fmt.lengths is not None:
        ln = fmt.lengths
        lines += ["## Reasoning length", "", f"In {ln.unit}, over {ln.count} records:", ""]
        lines += _table(
            ("p50", "p90", "p99", "mean", "max"), [(ln.p50, ln.p90, ln.p99, ln.mean, ln.max)]
        )
        lines += ["", f"![reasoning length]({LENGTHS})", ""]
    if fmt.format is Format.reasoning:
        lines += ["## Chat templates", "", _SAFE_TEMPLATES, ""]
        if fmt.template is not None:
            t = fmt.template
            lines += [f"Checked `{t.template}`: {t.detail} (record shape `{t.mode.value}`).", ""]
            if t.end_of_turn is not None:
                lines += [
                    f"Its assistant turn ends with the answer line then `{t.end_of_turn!r}`.",
                    "",
                ]
            if t.mode is TemplateMode.text:
                lines += [
                    "**Train on the `text` column**: through this template `messages` "
                    "would lose the chain.",
                    "",
                    _BOS_NOTES[t.text_without_bos],
                    "",
                ]
    if manifest.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in manifest.warnings] + [""]
    lines += ["## Columns", ""]
    lines += [f"- `{c}`: {_COLUMNS.get(c, '')}" for c in fmt.columns]
    lines.append("")
    lines += _loading(fmt, manifest.to)
    return "\n".join(lines)
