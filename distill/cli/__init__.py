"""The `distill` command line: thin commands over the library functions in `distill`.

Every command registers here at import; each command module imports its heavy libraries
(SQLAlchemy, Celery, datasets, matplotlib, alembic, vLLM) inside the command, so `distill
--help` and the quick commands start at once."""

from __future__ import annotations

import gc
import logging
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from distill.cli import broker, db, demo, evaluate, export, importing, jobs, teacher, ui
from distill.errors import UserError


class _Group(TyperGroup):
    """Turns errors a user can fix into one line on stderr and exit code 1, never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            _fail(str(exc))
        except Exception as exc:
            # Checked by module first: importing SQLAlchemy costs every command a third of a
            # second, and click ends even `--help` with an exception.
            if type(exc).__module__.startswith("pydantic"):
                _fail(f"configuration: {_settings_error(exc)}")
            if not type(exc).__module__.startswith("sqlalchemy"):
                raise
            from sqlalchemy.exc import OperationalError

            if not isinstance(exc, OperationalError):
                raise
            first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            _fail(
                f"database error ({first}); check DISTILL_DATABASE_URL, then `distill db upgrade`"
            )


def _settings_error(exc: Exception) -> str:
    """A pydantic error of the settings as one line: the variable, and what is wrong."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc).splitlines()[0]
    first = errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    variable = f"DISTILL_{where.upper()}: " if where else ""
    return f"{variable}{str(first.get('msg', '')).removeprefix('Value error, ')}"


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"distill {version('distill')}")
        raise typer.Exit()


app = typer.Typer(
    name="distill",
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help, wrapped to the terminal: rich's tables cut long option names at 80 columns.
    rich_markup_mode=None,
)


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Generate curriculum-ordered distillation data from a reasoning teacher served by vLLM.

    Example: distill import mmlu.jsonl && distill enqueue --n 3000 --samples 4 --wait
    """


app.add_typer(db.app, name="db")
app.command("import", help=importing.HELP)(importing.import_)
app.command()(jobs.enqueue)
app.command()(jobs.worker)
app.command()(jobs.status)
app.command()(jobs.retry)
app.command()(jobs.reconcile)
app.add_typer(teacher.app, name="teacher")
app.add_typer(broker.app, name="broker")
app.command()(export.export)
app.command("eval", help=evaluate.HELP)(evaluate.eval_)
app.command(help=demo.HELP)(demo.demo)
app.command(help=ui.HELP)(ui.ui)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    finally:
        # The interpreter's last cyclic collection walks every object the command's libraries
        # made (SQLAlchemy, Celery, pydantic): ~0.2 s of CPU after `enqueue` has published,
        # taken from the worker and vLLM's server just as they start on its jobs. Frozen
        # objects are skipped by it; atexit handlers and module teardown still run, and the OS
        # frees the memory (docs/benchmarks.md, run J).
        gc.freeze()
