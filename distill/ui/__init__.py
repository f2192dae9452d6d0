"""`distill ui`: a read-only web app over distill's database.

Server-rendered pages (FastAPI + Jinja2, autoescaped), a little vanilla JavaScript for live
updates and toggles, charts drawn server-side as SVG, LaTeX rendered server-side to MathML: no
CDN, nothing fetched from outside, so it works offline. `create_app` builds the app;
`distill.cli.ui` serves it with uvicorn."""

from __future__ import annotations

from distill.ui.app import create_app

__all__ = ["create_app"]
