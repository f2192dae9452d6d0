"""Export preview: the funnel `distill export` would report for a selection, computed in the
background and polled, so the page answers at once whatever the selection's size."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from distill.models import Run
from distill.ui.forms import Blank
from distill.ui.queries.chains import subjects
from distill.ui.queries.preview import Preview, PreviewRequest, preview_at, state_key
from distill.ui.routes.common import DB, State, page
from distill.ui.state import UIState
from schemas.export_options import PerQuestion

logger = logging.getLogger(__name__)
router = APIRouter()
POLL_MS = 1000


class PreviewQuery(BaseModel):
    """The preview's query string: the chain browser's run and subject, and export's choices."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run: Annotated[int | None, Blank] = None
    subject: Annotated[str | None, Blank] = None
    per_question: PerQuestion = PerQuestion.best
    balance: Annotated[bool | None, Blank] = None
    max_reasoning_tokens: Annotated[int | None, Blank] = None

    def request(self) -> PreviewRequest:
        return PreviewRequest(
            runs=(self.run,) if self.run is not None else (),
            subjects=(self.subject,) if self.subject is not None else (),
            per_question=self.per_question,
            balance=self.balance,
            max_reasoning_tokens=self.max_reasoning_tokens,
        )

    def params(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_defaults=True)


def _future(state: UIState, wanted: PreviewRequest) -> tuple[Future[Preview], float]:
    key = (wanted, state_key(state.engine))
    url = state.engine.url.render_as_string(hide_password=False)
    return state.background.submit(key, preview_at, url, wanted)


def _result_context(started: tuple[Future[Preview], float]) -> dict[str, object]:
    future, since = started
    if not future.done():
        return {"pending": True, "preview": None, "elapsed": time.monotonic() - since}
    try:
        return {"pending": False, "preview": future.result()}
    except Exception as exc:  # shown on the page; the UI keeps serving
        logger.exception("export preview failed")
        return {"pending": False, "preview": Preview(error=f"the preview failed: {exc}")}


@router.get("/export", response_class=HTMLResponse)
def export_page(
    request: Request, q: Annotated[PreviewQuery, Query()], state: State, session: DB
) -> HTMLResponse:
    wanted = q.request()
    future = _future(state, wanted)
    runs = session.execute(select(Run.id, Run.teacher_model).order_by(Run.id.desc())).all()
    context = {
        "q": q,
        "params": q.params(),
        "command": wanted.command(),
        "runs": runs,
        "subjects": subjects(session),
        "per_question": [p.value for p in PerQuestion],
        "poll_ms": POLL_MS,
        **_result_context(future),
    }
    return page(request, state, "export.html", context)


@router.get("/export/result", response_class=HTMLResponse)
def export_result(
    request: Request, q: Annotated[PreviewQuery, Query()], state: State
) -> HTMLResponse:
    context = {
        "params": q.params(),
        "poll_ms": POLL_MS,
        **_result_context(_future(state, q.request())),
    }
    return page(request, state, "_export_result.html", context)
