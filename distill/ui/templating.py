"""Jinja2 templates from the package, autoescaped, with the few filters the pages use."""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlencode

from fastapi.templating import Jinja2Templates


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f} %"


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _query(params: dict[str, object], **changes: object) -> str:
    """The query string of `params` with `changes` applied (None removes a key)."""
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")}, doseq=True)


def make_templates() -> Jinja2Templates:
    # Jinja2Templates turns autoescaping on for .html: everything a model wrote is escaped.
    templates = Jinja2Templates(directory=Path(str(files("distill.ui") / "templates")))
    env = templates.env
    env.filters.update(duration=_duration, percent=_percent, when=_when, number=_number)
    env.globals["query"] = _query
    return templates
