"""The `distill` command line: thin commands over the library functions in `distill`."""

from __future__ import annotations

import logging
import sys

import typer

from distill.errors import UserError

app = typer.Typer(
    name="distill",
    help="Generate curriculum-ordered distillation data from a reasoning teacher served by vLLM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Imported here so `distill --help` stays fast and each command module owns its options.
    from distill.cli import db as db_cmd
    from distill.cli import jobs

    app.add_typer(db_cmd.app, name="db")
    app.command()(jobs.enqueue)
    app.command()(jobs.worker)
    app.command()(jobs.status)
    app.command()(jobs.retry)


def main() -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _register()
    try:
        app()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
