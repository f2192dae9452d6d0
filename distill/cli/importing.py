"""`distill import`: load multiple-choice questions from a file or dataset into the database."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from distill.errors import UserError
from distill.importers.answers import AnswerFormat
from distill.importers.layout import FieldMapping, PresetName

if TYPE_CHECKING:
    from distill.importers.load import ProgressCallback
    from distill.importers.store import ImportReport

# Typer keeps single newlines of a docstring in --help, so each paragraph is one string here.
HELP = "\n\n".join(
    (
        "Import multiple-choice questions, skipping ones already in the database.",
        "Questions are validated (2-10 distinct options, an answer naming one of them) and "
        "deduplicated by content, within the source and against the database, so importing the "
        "same file twice adds nothing. An invalid row stops the import with a message naming "
        "the file, row and field, and nothing is imported, unless --skip-invalid is given. "
        "Without --preset or field options the columns pick the preset.",
        "Examples:",
        "  distill import mmlu_test.parquet",
        "  distill import allenai/ai2_arc --config ARC-Challenge --split test",
        "  distill import q.csv --choices-field A,B,C,D --answer-field key --subject physics",
        "  distill import big.jsonl --skip-invalid --report rejected.jsonl --json",
    )
)


def import_(
    source: Annotated[
        str,
        typer.Argument(
            metavar="PATH_OR_DATASET",
            help="A .jsonl/.json/.csv/.tsv (optionally .gz) or .parquet file, a directory saved "
            "with datasets' save_to_disk, or a Hugging Face Hub dataset id.",
            show_default=False,
        ),
    ],
    preset: Annotated[
        PresetName | None,
        typer.Option(help="Column layout of a known dataset. Default: detected from the columns."),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="Split of a dataset with several. Default: 'test', else the first."),
    ] = None,
    config: Annotated[
        str | None, typer.Option(help="Hub dataset configuration (subset), e.g. 'all'.")
    ] = None,
    question_field: Annotated[str | None, typer.Option(help="Column with the question.")] = None,
    choices_field: Annotated[
        str | None,
        typer.Option(
            help="Column with the list of options, or several comma-separated columns holding "
            "one option each (e.g. A,B,C,D)."
        ),
    ] = None,
    answer_field: Annotated[
        str | None,
        typer.Option(help="Column with the answer: letter (A-J, '(B)'), 0-based index or text."),
    ] = None,
    answer_format: Annotated[
        AnswerFormat,
        typer.Option(help="How to read the answer when digits could be an index or an option."),
    ] = "auto",
    gold_first: Annotated[
        bool,
        typer.Option(
            "--gold-first",
            help="The first --choices-field column holds the correct answer (as in SciQ or "
            "GPQA); options are then shuffled, deterministically per question.",
        ),
    ] = False,
    subject_field: Annotated[str | None, typer.Option(help="Column with the subject.")] = None,
    subject: Annotated[
        str | None, typer.Option(help="One subject for every question (overrides any column).")
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Import the valid rows and write the others, with reasons, to --report. "
            "Default: any invalid row aborts the import and nothing is imported.",
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Where --skip-invalid writes rejected rows (JSONL). "
            "Default: <input stem>.rejected.jsonl in the current directory.",
            dir_okay=False,
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Read only the first N rows of the source.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
) -> None:
    """Import multiple-choice questions (help text: HELP below)."""
    from distill.importers.load import InvalidRowError
    from distill.importers.store import import_questions

    mapping = FieldMapping(
        question=question_field,
        choices=_columns(choices_field),
        answer=answer_field,
        subject=subject_field,
        gold_first=gold_first,
        answer_format=answer_format,
    )
    if subject is not None and subject_field is not None:
        raise UserError("give either --subject or --subject-field, not both")
    if report is not None and not skip_invalid:
        raise UserError(
            "--report names where --skip-invalid writes rejected rows; add --skip-invalid"
        )
    with _progress_bar() as progress:
        try:
            result = import_questions(
                source,
                preset=preset,
                mapping=mapping,
                split=split,
                config_name=config,
                subject=subject,
                skip_invalid=skip_invalid,
                report_path=report,
                limit=limit,
                progress=progress,
            )
        except InvalidRowError as exc:
            raise UserError(f"{exc}; nothing imported (--skip-invalid imports the rest)") from None
    typer.echo(json.dumps(result.to_dict()) if json_output else summary(result))


import_.__doc__ = HELP


def summary(report: ImportReport) -> str:
    """One line: what was inserted, skipped and rejected."""
    parts = [f"{report.inserted} inserted", f"{report.duplicates} duplicates skipped"]
    if report.already_present:
        parts[-1] += f" ({report.already_present} already in the database)"
    if report.rejected:
        parts.append(f"{report.rejected} rejected (see {report.report_path})")
    if report.referring:
        # Counted over the source's questions: kept in an order that keeps their meaning.
        parts.append(f"{report.referring} with options that refer to other options")
    preset = f" as {report.preset}" if report.preset else ""
    return f"{report.source}: {report.rows_read} rows read{preset}; " + ", ".join(parts)


def _columns(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    columns = tuple(part.strip() for part in value.split(","))
    if not all(columns):
        raise UserError(f"--choices-field {value!r}: empty column name")
    return columns


@contextmanager
def _progress_bar() -> Iterator[ProgressCallback | None]:
    """A rich progress bar on stderr when it is a terminal; nothing when piped or scripted."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                label = "reading rows" if phase == "read" else "inserting questions"
                tasks[phase] = bar.add_task(label, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update
