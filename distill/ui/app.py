"""The app factory: one engine, the templates and static files shipped in the package, the
token guard and security headers, and the GET routes of each page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from distill.ui import security
from distill.ui.cache import Background
from distill.ui.routes import chains, preview, runs
from distill.ui.state import UIState
from distill.ui.templating import make_templates


def create_app(*, engine: Engine, token: str | None = None) -> FastAPI:
    """The UI over `engine`'s database. With `token`, every request must present it."""
    background = Background()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        background.shutdown()

    app = FastAPI(
        title="distill",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # nothing to document: the pages are the interface
    )
    app.state.ui = UIState(engine=engine, templates=make_templates(), background=background)
    static = Path(str(files("distill.ui") / "static"))
    app.mount("/static", StaticFiles(directory=static), name="static")
    app.include_router(runs.router)
    app.include_router(chains.router)
    app.include_router(preview.router)
    app.middleware("http")(security.security_headers)
    # Added last, so it runs first: nothing, not even a static file, answers without the token.
    app.add_middleware(security.TokenGuard, token=token)
    return app
