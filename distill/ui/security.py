"""Who may read the UI: loopback by default; anywhere else only with an access token.

The token (DISTILL_UI_TOKEN) is accepted as `Authorization: Bearer <token>`, as the
`X-Distill-Token` header, or once as `?token=`: that request gets a cookie and is redirected to
the same address without the token, so the token does not stay in the history or in links.
Every comparison is constant-time (`hmac.compare_digest`)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from distill.errors import UserError

COOKIE = "distill_ui"
HEADER = "x-distill-token"


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """UserError when `host` is reachable from other machines and no token protects it."""
    if not is_loopback(host) and not token:
        raise UserError(
            f"refusing to serve on {host} without an access token: set DISTILL_UI_TOKEN "
            "(e.g. `export DISTILL_UI_TOKEN=$(openssl rand -hex 24)`), or bind to 127.0.0.1"
        )


def cookie_value(token: str) -> str:
    """What the cookie holds: derived from the token, not the token itself."""
    return hmac.new(token.encode(), b"distill-ui-cookie", hashlib.sha256).hexdigest()


def _host_name(header: str) -> str:
    """The name in a Host header, without the port: `[::1]:8321` -> `::1`."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.partition(":")[0]


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


class TokenGuard:
    """ASGI middleware: without a token configured, only requests addressed to a loopback
    name pass (a page on another site cannot read the UI through DNS rebinding); with one,
    every request must carry it."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token
        self.cookie = cookie_value(token) if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response = self._refusal(request)
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def _refusal(self, request: Request) -> Response | None:
        if self.token is None or self.cookie is None:
            if is_loopback(_host_name(request.headers.get("host", ""))):
                return None
            return PlainTextResponse("unknown Host: open the UI as 127.0.0.1 or localhost", 400)
        if _same(request.headers.get(HEADER), self.token) or _same(_bearer(request), self.token):
            return None
        if _same(request.cookies.get(COOKIE), self.cookie):
            return None
        if _same(request.query_params.get("token"), self.token):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            # One leading slash: "//host/..." would send the browser to another site.
            path = "/" + request.url.path.lstrip("/")
            target = path + (f"?{urlencode(rest)}" if rest else "")
            redirect = RedirectResponse(target, status_code=303)
            redirect.set_cookie(
                COOKIE, self.cookie, httponly=True, samesite="strict", path="/", secure=False
            )
            return redirect
        return PlainTextResponse(
            "access token required: open the address with ?token=<DISTILL_UI_TOKEN> once, or "
            "send it as `Authorization: Bearer <token>`",
            401,
            headers={"WWW-Authenticate": "Bearer"},
        )


# Defence in depth behind autoescaping: no inline script runs, nothing loads from elsewhere.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


async def security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-store")
    return response
