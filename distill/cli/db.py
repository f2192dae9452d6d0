"""`distill db ...`: schema management."""

from __future__ import annotations

import typer

app = typer.Typer(help="Database schema management.", no_args_is_help=True, rich_markup_mode=None)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create or migrate the database schema to REVISION (default: the latest).

    Example: DISTILL_DATABASE_URL=postgresql+psycopg://localhost/distill distill db upgrade
    """
    from distill import migrate
    from distill.config import get_settings

    url = get_settings().database_url
    migrate.upgrade(url, revision)
    typer.echo(f"database at revision {revision}: {_redact(url)}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
