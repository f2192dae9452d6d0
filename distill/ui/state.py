"""What every request handler shares: the engine, the templates, the background cache."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from distill.ui.cache import Background, Memo


@dataclass(slots=True)
class UIState:
    engine: Engine
    templates: Jinja2Templates
    background: Background
    memo: Memo = field(default_factory=Memo)


def ui_state(request: Request) -> UIState:
    state: UIState = request.app.state.ui
    return state
