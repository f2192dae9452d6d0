"""`distill export`: stored generations -> SFT datasets with a dataset card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from distill.config import get_settings
from distill.errors import UserError
from distill.export import export_dataset
from schemas.export import (
    Curriculum,
    ExportFormat,
    ExportManifest,
    ExportOptions,
    OutputKind,
    PerQuestion,
)

err = Console(stderr=True)


def export(
    fmt: Annotated[
        ExportFormat,
        typer.Option("--format", help="reasoning (think block + answer), direct, or both."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output directory (created).")],
    to: Annotated[
        OutputKind,
        typer.Option(
            "--to", help="disk: DatasetDict.save_to_disk; jsonl / parquet: one file per split."
        ),
    ] = OutputKind.disk,
    run: Annotated[
        list[int] | None,
        typer.Option("--run", metavar="ID", help="Only these run ids (repeatable)."),
    ] = None,
    subject: Annotated[
        list[str] | None,
        typer.Option("--subject", metavar="S", help="Only these subjects (repeatable)."),
    ] = None,
    teacher_model: Annotated[
        str | None, typer.Option("--teacher-model", help="Only generations of this teacher.")
    ] = None,
    per_question: Annotated[
        PerQuestion,
        typer.Option("--per-question", help="best: the shortest correct chain; all: every one."),
    ] = PerQuestion.best,
    max_reasoning_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-reasoning-tokens", min=1, help="Drop longer chains (teacher-reported tokens)."
        ),
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option("--tokenizer", help="Local tokenizer dir (tokenizer.json): exact counts."),
    ] = None,
    val_size: Annotated[
        int | None,
        typer.Option(
            "--val-size", min=0, help="Validation questions (default: 500, or 10 % below 5,000)."
        ),
    ] = None,
    curriculum: Annotated[
        Curriculum, typer.Option("--curriculum", help="Order of train.")
    ] = Curriculum.easy_to_hard,
    stages: Annotated[
        int | None,
        typer.Option("--stages", min=1, help="Cut train into N difficulty stages (stage column)."),
    ] = None,
    balance: Annotated[
        bool | None,
        typer.Option(
            "--balance/--no-balance",
            help="Uniform gold letters (default: on for direct, off for reasoning).",
            show_default=False,
        ),
    ] = None,
    decontaminate: Annotated[
        list[Path] | None,
        typer.Option(
            "--decontaminate", metavar="FILE", help="Drop questions found in these eval files."
        ),
    ] = None,
    decontaminate_preset: Annotated[
        str | None,
        typer.Option("--decontaminate-preset", help="Column preset of the eval files (mmlu...)."),
    ] = None,
    think_open: Annotated[str, typer.Option("--think-open")] = "<think>",
    think_close: Annotated[str, typer.Option("--think-close")] = "</think>",
    answer_template: Annotated[
        str, typer.Option("--answer-template", help="The answer line; {letter} is replaced.")
    ] = "The answer is {letter}.",
    student_template: Annotated[
        Path | None,
        typer.Option(
            "--student-template",
            help="The student's tokenizer dir: check its chat template keeps the chain.",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Splits, shuffles, balance (default: DISTILL_SEED)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier export in --out.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Write SFT datasets (TRL conversational records) with splits, a curriculum order and a
    dataset card (README.md, plots, manifest.json) from the finished generations.

    Example: distill export --format both --out data/mmlu-r1 --val-size 500 --stages 3
    """
    try:
        options = ExportOptions(
            format=fmt,
            out=out,
            to=to,
            runs=tuple(run or ()),
            subjects=tuple(subject or ()),
            teacher_model=teacher_model,
            per_question=per_question,
            max_reasoning_tokens=max_reasoning_tokens,
            tokenizer=tokenizer,
            val_size=val_size,
            curriculum=curriculum,
            stages=stages,
            balance=balance,
            decontaminate=tuple(decontaminate or ()),
            decontaminate_preset=decontaminate_preset,
            think_open=think_open,
            think_close=think_close,
            answer_template=answer_template,
            student_template=student_template,
            seed=get_settings().seed if seed is None else seed,
            overwrite=overwrite,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{where + ': ' if where else ''}{first['msg']}") from None
    with _progress() as update:
        manifest = export_dataset(options=options, progress=update)
    if as_json:
        typer.echo(manifest.model_dump_json(indent=2))
        return
    _summary(manifest, out)


class _progress:
    """A rich progress bar on stderr, one line per stage, fed by export_dataset's callback."""

    def __enter__(self) -> _progress:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
        )
        self.tasks: dict[str, TaskID] = {}
        self.bar.__enter__()
        return self

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)


def _summary(manifest: ExportManifest, out: Path) -> None:
    console = Console()
    for name, fmt in manifest.outputs.items():
        table = Table(title=f"{name}: {fmt.records} records", title_justify="left")
        table.add_column("split")
        table.add_column("records", justify="right")
        table.add_column("questions", justify="right")
        table.add_column("gold letters")
        for split, stats in fmt.splits.items():
            letters = (
                "  ".join(f"{x} {100 * n / stats.records:.1f}%" for x, n in stats.letters.items())
                if stats.records
                else "-"
            )
            table.add_row(split, str(stats.records), str(stats.questions), letters)
        console.print(table)
        dropped = [s for s in fmt.funnel[1:] if s.removed]
        if dropped:
            console.print(
                "  dropped: " + "; ".join(f"{s.removed} {s.step}" for s in dropped),
                highlight=False,
            )
    for warning in manifest.warnings:
        err.print(f"warning: {warning}", highlight=False)
    console.print(f"written to {out} (dataset card: README.md)", highlight=False)
