"""Runs: every run's progress, and one run in detail; the live parts are fragments the page's
script fetches every few seconds."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from distill.ui import svg
from distill.ui.queries.runs import RunDetail, list_runs, run_detail
from distill.ui.routes.common import DB, State, not_found, page

router = APIRouter()
REFRESH_MS = 5000


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/runs", status_code=307)


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, state: State, session: DB) -> HTMLResponse:
    return page(
        request,
        state,
        "runs.html",
        {"runs": list_runs(session, memo=state.memo), "refresh_ms": REFRESH_MS},
    )


@router.get("/runs/live", response_class=HTMLResponse)
def runs_live(request: Request, state: State, session: DB) -> HTMLResponse:
    return page(request, state, "_runs_table.html", {"runs": list_runs(session, memo=state.memo)})


def _charts(detail: RunDetail) -> dict[str, object]:
    return {
        "throughput_svg": svg.line_chart(
            detail.throughput, title="completion tokens/s over the run"
        ),
        "lengths_svg": svg.bar_chart(
            detail.lengths.counts,
            width=detail.lengths.width,
            title="completion length (tokens)",
        ),
    }


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: int, state: State, session: DB) -> HTMLResponse:
    detail = run_detail(session, run_id=run_id, memo=state.memo)
    if detail is None:
        return not_found(request, state, f"run {run_id}")
    context = {"d": detail, "refresh_ms": REFRESH_MS, **_charts(detail)}
    return page(request, state, "run.html", context)


@router.get("/runs/{run_id}/live", response_class=HTMLResponse)
def run_live(request: Request, run_id: int, state: State, session: DB) -> HTMLResponse:
    detail = run_detail(session, run_id=run_id, memo=state.memo)
    if detail is None:
        return not_found(request, state, f"run {run_id}")
    return page(request, state, "_run_live.html", {"d": detail, **_charts(detail)})
