"""The `distill` command line: thin commands over the library functions in `distill`."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import typer
from sqlalchemy.exc import OperationalError as DatabaseUnreachable
from typer.core import TyperGroup

from distill.errors import UserError


class _Group(TyperGroup):
    """Turns errors a user can fix into one line on stderr and exit code 1, never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            _fail(str(exc))
        except DatabaseUnreachable as exc:
            first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            _fail(
                f"database error ({first}); check DISTILL_DATABASE_URL, then `distill db upgrade`"
            )


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


app = typer.Typer(
    name="distill",
    cls=_Group,
    help="Generate curriculum-ordered distillation data from a reasoning teacher served by vLLM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_registered = False


def _register() -> None:
    # Imported here so each command module owns its options and `distill --help` stays light.
    global _registered
    if _registered:
        return
    _registered = True
    from distill.cli import db as db_cmd
    from distill.cli import export as export_cmd
    from distill.cli import importing, jobs, teacher

    app.add_typer(db_cmd.app, name="db")
    app.command("import")(importing.import_)
    app.command()(jobs.enqueue)
    app.command()(jobs.worker)
    app.command()(jobs.status)
    app.command()(jobs.retry)
    app.add_typer(teacher.app, name="teacher")
    app.command()(export_cmd.export)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _register()
    app()
