"""The chain browser: the filtered, sorted, paginated list; one chain with its siblings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from distill.models import Outcome, Run
from distill.ui.queries.chain import get_chain, siblings
from distill.ui.queries.chains import FINISH_REASONS, ChainFilters, Sort, list_chains, subjects
from distill.ui.render import render_chain
from distill.ui.routes.common import DB, State, not_found, page

router = APIRouter()


@router.get("/chains", response_class=HTMLResponse)
def chains_page(
    request: Request, filters: Annotated[ChainFilters, Query()], state: State, session: DB
) -> HTMLResponse:
    result = list_chains(session, filters=filters)
    runs = session.execute(select(Run.id, Run.teacher_model).order_by(Run.id.desc())).all()
    context = {
        "f": filters,
        "params": filters.params(),
        "result": result,
        "runs": runs,
        "subjects": subjects(session),
        "outcomes": [o.value for o in Outcome],
        "finish_reasons": FINISH_REASONS,
        "sorts": [s.value for s in Sort],
    }
    return page(request, state, "chains.html", context)


@router.get("/chains/{generation_id}", response_class=HTMLResponse)
def chain_page(request: Request, generation_id: int, state: State, session: DB) -> HTMLResponse:
    view = get_chain(session, generation_id=generation_id)
    if view is None:
        return not_found(request, state, f"generation {generation_id}")
    others = siblings(session, question_id=view.question_id, exclude_job=view.sample.job_id)
    context = {
        "c": view,
        "rendered": render_chain(view.sample.reasoning),
        "others": others,
        "others_rendered": {s.job_id: render_chain(s.reasoning) for s in others},
    }
    return page(request, state, "chain.html", context)
