"""`distill ui`: the read-only dashboard and chain browser, served by uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer

HELP = """Serve a read-only web UI over the database: runs and their live progress, the chain
browser, and the export preview.

It binds to 127.0.0.1. A host other machines can reach is refused unless the access token
DISTILL_UI_TOKEN is set; then every request must carry it (open the address once with
?token=..., or send `Authorization: Bearer ...`). The UI never writes.

Example: distill ui --port 8321   (then open http://127.0.0.1:8321)
"""

TOKEN_ENV = "DISTILL_UI_TOKEN"


def ui(
    host: Annotated[
        str, typer.Option(help="Address to bind (non-loopback needs DISTILL_UI_TOKEN).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8321,
) -> None:
    from distill.db import get_engine
    from distill.ui.security import check_bind

    # From the environment only: a token on the command line would show in `ps`.
    token = os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)
    engine = get_engine()

    import uvicorn

    from distill.ui import create_app

    app = create_app(engine=engine, token=token)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"distill ui on http://{shown}:{port}" + (" (token required)" if token else ""))
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
