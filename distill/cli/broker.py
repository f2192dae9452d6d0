"""`distill broker ...`: the embedded broker (DISTILL_BROKER_URL=embedded) — start it, stop it,
see it, and print its URL for tools that want one (Flower, `celery inspect`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from distill.jobs.embedded import EmbeddedBroker

app = typer.Typer(
    help="The embedded broker: a Redis-protocol server distill runs itself (no Redis needed).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _broker() -> EmbeddedBroker:
    from distill.config import get_settings
    from distill.jobs.embedded import for_settings

    return for_settings(get_settings())


@app.command()
def start() -> None:
    """Start the embedded broker if it is not running, and print its URL.

    Any distill command that needs the broker starts it as well when DISTILL_BROKER_URL is
    `embedded`; it keeps running (shared by every distill process) until `distill broker stop`.

    Example: distill broker start
    """
    broker = _broker()
    running = broker.answers()
    url = broker.ensure()
    typer.echo(f"{'already running' if running else 'started'}: {url} (pid {broker.pid()})")


@app.command()
def stop() -> None:
    """Stop the embedded broker. Queued messages are kept in its append-only file and come back
    when it next starts.

    Example: distill broker stop
    """
    broker = _broker()
    clients = broker.other_clients()
    pid = broker.stop()
    if pid is None:
        typer.echo(f"not running (nothing at {broker.socket})")
        return
    connected = f"; {clients} client(s) were connected (workers reconnect when it is back)"
    typer.echo(f"stopped (pid {pid}){connected if clients else ''}")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Say whether the embedded broker runs, where, and what it holds.

    Example: distill broker status
    """
    import json

    broker = _broker()
    report: dict[str, object] = {
        "running": broker.answers(),
        "url": broker.url,
        "pid": broker.pid(),
        "directory": str(broker.directory),
        "log": str(broker.logfile),
    }
    if report["running"]:
        with broker.client() as client:
            report["clients"] = broker.other_clients()
            report["keys"] = int(client.dbsize())
            report["used_memory"] = client.info("memory").get("used_memory_human")
    if as_json:
        typer.echo(json.dumps(report))
        return
    for key, value in report.items():
        typer.echo(f"{key:12} {value}")


@app.command()
def url(
    start_it: Annotated[
        bool, typer.Option("--start/--no-start", help="Start the broker if it is not running.")
    ] = True,
) -> None:
    """Print the embedded broker's URL, e.g. for Flower or `celery inspect`.

    Example: celery --broker "$(distill broker url)" flower
    """
    broker = _broker()
    typer.echo(broker.ensure() if start_it else broker.url)
