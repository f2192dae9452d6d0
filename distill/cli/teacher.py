"""`distill teacher ...`: start the teacher's vLLM server, and check that a teacher answers."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from distill.errors import UserError

if TYPE_CHECKING:
    from distill.config import Settings
    from schemas.teacher import ProbeReport

app = typer.Typer(
    help="Serve the teacher with vLLM, or check the configured teacher.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command(name="serve")
def serve_command(
    extra_args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- VLLM_ARGS",
            help="More vLLM server flags, after `--`; they follow DISTILL_SERVE_EXTRA_ARGS.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the command and exit.")] = False,
    model_path: Annotated[
        str | None,
        typer.Option(
            help="Hub id or local dir (default: DISTILL_SERVE_MODEL_PATH, else the name)."
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="(default: DISTILL_SERVE_PORT)")
    ] = None,
    max_model_len: Annotated[
        int | None,
        typer.Option(
            min=256, help="Prompt + completion tokens (default: DISTILL_SERVE_MAX_MODEL_LEN)."
        ),
    ] = None,
    tensor_parallel_size: Annotated[
        int | None,
        typer.Option(min=1, help="GPUs per server (default: DISTILL_SERVE_TENSOR_PARALLEL_SIZE)."),
    ] = None,
    reasoning_parser: Annotated[
        str | None,
        typer.Option(
            metavar="NAME|none",
            help="e.g. deepseek_r1; `none` turns it off (default: DISTILL_SERVE_REASONING_PARSER).",
        ),
    ] = None,
    prefix_caching: Annotated[
        bool | None,
        typer.Option(
            "--prefix-caching/--no-prefix-caching",
            help="(default: DISTILL_SERVE_PREFIX_CACHING)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start vLLM's OpenAI-compatible server for the configured teacher, printing the command.

    Flags come from DISTILL_TEACHER_MODEL (served name) and DISTILL_SERVE_* (as in compose).
    Options here override them for this run; arguments after `--` go to vLLM unchanged.
    The process becomes vLLM (exec), so Ctrl-C and `docker stop` reach it directly.

    Example: distill teacher serve --dry-run --max-model-len 32768 -- --enforce-eager
    """
    from distill.config import get_settings
    from distill.teacher import vllm as serve

    overrides: dict[str, Any] = {
        "serve_model_path": model_path,
        "serve_port": port,
        "serve_max_model_len": max_model_len,
        "serve_tensor_parallel_size": tensor_parallel_size,
        "serve_reasoning_parser": reasoning_parser,
        "serve_prefix_caching": prefix_caching,
    }
    settings = _with_overrides(get_settings(), overrides)
    command = serve.build_serve_command(settings) + list(extra_args or [])
    line = serve.format_command(command)
    if dry_run:
        typer.echo(line)
        return
    serve.require_vllm()
    typer.echo(f"starting: {line}", err=True)
    # exec discards Python's buffers: flush what was printed before the process is replaced.
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        raise UserError(f"cannot start {command[0]}: {exc.strerror}") from None


@app.command()
def check(
    max_tokens: Annotated[
        int | None,
        typer.Option(
            min=1, help="Budget to check against the served context (default: DISTILL_MAX_TOKENS)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object.")
    ] = False,
) -> None:
    """Send one tiny request to the configured teacher and report what came back.

    Checks that DISTILL_TEACHER_URL answers and serves DISTILL_TEACHER_MODEL, and that
    the token budget fits the context the server serves (prompt + completion).
    Shows how the server lays out the reasoning: in the text, or in a separate field.

    Example: DISTILL_TEACHER_URL=http://gpu-host:8000/v1 distill teacher check
    """
    from distill.config import get_settings
    from distill.teacher.client import TeacherError

    settings = get_settings()
    budget = max_tokens or settings.max_tokens
    try:
        report, refusal = asyncio.run(_probe(settings, budget))
    except TeacherError as exc:
        raise UserError(f"teacher check failed: {exc}") from None
    if refusal is not None:
        raise UserError(f"teacher check failed: {refusal}")
    if as_json:
        typer.echo(report.model_dump_json())
        return
    typer.echo(f"teacher  {report.model}  (served: {', '.join(report.served_models)})")
    typer.echo(f"url      {report.url}")
    typer.echo(f"latency  {report.latency_s:.2f}s for {report.completion_tokens} tokens")
    typer.echo(f"shape    {report.shape}: {report.note}")
    typer.echo(f"finish   {report.finish_reason}")
    typer.echo(f"sample   {report.sample!r}")
    typer.echo(f"budget   {_budget_line(report)}")


def _budget_line(report: ProbeReport) -> str:
    if report.max_model_len is None:
        return f"max_tokens {report.max_tokens}; the server does not report its context length"
    shortest = report.shortest_prompt_tokens
    room = report.max_model_len - (report.max_tokens or 0)
    prompts = f"; the shortest prompt takes {shortest}" if shortest is not None else ""
    return (
        f"max_tokens {report.max_tokens} of a {report.max_model_len}-token context leaves "
        f"{room} for the prompt{prompts}"
    )


async def _probe(settings: Settings, max_tokens: int) -> tuple[ProbeReport, str | None]:
    # Imported here so that `distill teacher serve` starts without loading the client stack.
    from distill.teacher.budget import read_budget
    from distill.teacher.client import OpenAITeacher
    from distill.teacher.probe import probe

    async with OpenAITeacher.from_settings(settings) as teacher:
        report = await probe(teacher)
        budget = await read_budget(teacher, max_tokens=max_tokens)
    report = report.model_copy(
        update={
            "max_model_len": budget.context,
            "max_tokens": max_tokens,
            "shortest_prompt_tokens": budget.floor,
        }
    )
    return report, budget.refusal()


def _with_overrides(settings: Settings, overrides: dict[str, Any]) -> Settings:
    """Settings with the options the user gave, validated like the settings themselves."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return settings
    return type(settings).model_validate({**settings.model_dump(), **given})
