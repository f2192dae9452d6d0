"""Secrets out of what distill prints: a URL's user and password never reach a terminal or a log."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit


def url(value: str) -> str:
    """`value` without the credentials in its authority: redis://:pw@host/0 -> redis://host/0."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parts.netloc:
        return value
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


_USERINFO = re.compile(r"(\b[a-zA-Z][\w+.-]*://)[^/\s@]+@")


def text(value: str) -> str:
    """`value` with the credentials of every URL in it removed (error messages quote URLs)."""
    return _USERINFO.sub(r"\1***@", value)
