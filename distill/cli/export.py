"""`distill export`: stored generations -> SFT datasets with a dataset card."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from distill.errors import UserError
from schemas.export_options import (
    Curriculum,
    ExportFormat,
    ExportOptions,
    OutputKind,
    PerQuestion,
)

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from schemas.export import ExportManifest


def _default(name: str) -> Any:
    """The option's default, as ExportOptions declares it: declared once."""
    return ExportOptions.model_fields[name].default


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
    ] = _default("to"),
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
    ] = _default("per_question"),
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
    ] = _default("curriculum"),
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
    think_open: Annotated[
        str, typer.Option("--think-open", help="The marker that opens the chain.")
    ] = _default("think_open"),
    think_close: Annotated[
        str, typer.Option("--think-close", help="The marker that closes the chain.")
    ] = _default("think_close"),
    answer_template: Annotated[
        str, typer.Option("--answer-template", help="The answer line; {letter} is replaced.")
    ] = _default("answer_template"),
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
    from pydantic import ValidationError

    from distill.config import get_settings
    from distill.export import export_dataset

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
    """A rich progress bar on stderr, one line per stage, fed by export_dataset's callback;
    nothing when stderr is not a terminal (scripts, logs)."""

    def __enter__(self) -> _progress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.tasks: dict[str, TaskID] = {}
        self.bar: Progress | None = None
        if not sys.stderr.isatty():
            return self
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.bar.__enter__()
        return self

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if self.bar is None:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _summary(manifest: ExportManifest, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console, err = Console(), Console(stderr=True)
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
    cards = (
        [out / name / "README.md" for name in manifest.outputs]
        if len(manifest.outputs) > 1
        else [out / "README.md"]
    )
    where = " and ".join(str(card) for card in cards)
    console.print(
        f"written to {out} (dataset card{'s' if len(cards) > 1 else ''}: {where})",
        highlight=False,
        soft_wrap=True,
    )
