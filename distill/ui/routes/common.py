"""What the route modules share: a read-only session per request, rendering a template."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from distill.ui.state import UIState, ui_state

State = Annotated[UIState, Depends(ui_state)]


def _session(state: State) -> Iterator[Session]:
    with Session(state.engine) as session:
        yield session
        session.rollback()  # nothing is ever written: end the read transaction


DB = Annotated[Session, Depends(_session)]


def page(
    request: Request, state: UIState, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    return state.templates.TemplateResponse(
        request, name, {"nav": name.split(".")[0], **context}, status_code=status_code
    )


def not_found(request: Request, state: UIState, what: str) -> HTMLResponse:
    return page(request, state, "missing.html", {"what": what}, status_code=404)
