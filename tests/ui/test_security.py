"""Localhost by default; elsewhere only with the token, and then on every request."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from distill.cli import app as cli
from distill.errors import UserError
from distill.ui import create_app
from distill.ui.security import COOKIE, check_bind, cookie_value, is_loopback
from tests.ui.seed import Seeded

TOKEN = "s3cret-token-for-tests"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "localhost", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.4", "example.org"])
def test_other_hosts_need_a_token(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(UserError, match="DISTILL_UI_TOKEN"):
        check_bind(host, None)
    check_bind(host, TOKEN)


def test_the_command_refuses_a_public_host_without_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DISTILL_UI_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["ui", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing to serve on 0.0.0.0")


def test_without_a_token_only_loopback_names_are_served(engine: Engine, seeded: Seeded) -> None:
    app = create_app(engine=engine)
    assert TestClient(app, base_url="http://127.0.0.1:8321").get("/runs").status_code == 200
    assert TestClient(app, base_url="http://localhost:8321").get("/runs").status_code == 200
    assert TestClient(app, base_url="http://[::1]:8321").get("/runs").status_code == 200
    # A page elsewhere that rebinds its own name to 127.0.0.1 sends its own Host: refused.
    rebound = TestClient(app, base_url="http://evil.example:8321").get("/runs")
    assert rebound.status_code == 400


@pytest.fixture
def guarded(engine: Engine, seeded: Seeded) -> TestClient:
    return TestClient(create_app(engine=engine, token=TOKEN), base_url="http://10.1.2.3:8321")


@pytest.mark.parametrize("path", ["/runs", "/chains", "/chains/1", "/export", "/static/ui.js"])
def test_with_a_token_everything_needs_it(guarded: TestClient, path: str) -> None:
    response = guarded.get(path)
    assert response.status_code == 401 and TOKEN not in response.text
    assert guarded.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.get(path, params={"token": "wrong"}).status_code == 401
    guarded.cookies.set(COOKIE, "forged")
    assert guarded.get(path).status_code == 401


def test_the_token_as_a_header(guarded: TestClient) -> None:
    assert guarded.get("/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert guarded.get("/runs", headers={"X-Distill-Token": TOKEN}).status_code == 200


def test_the_token_once_in_the_address_then_a_cookie(guarded: TestClient) -> None:
    first = guarded.get(
        "/chains", params={"token": TOKEN, "outcome": "correct"}, follow_redirects=False
    )
    assert first.status_code == 303
    assert first.headers["location"] == "/chains?outcome=correct"  # the token is gone
    cookie = first.headers["set-cookie"]
    assert TOKEN not in cookie and cookie_value(TOKEN) in cookie
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert guarded.get("/chains?outcome=correct").status_code == 200  # the cookie alone now
    assert guarded.get("/static/ui.css").status_code == 200


def test_the_redirect_stays_on_this_site(guarded: TestClient) -> None:
    address = f"http://10.1.2.3:8321//evil.example/x?token={TOKEN}"  # a path of two slashes
    response = guarded.get(address, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/evil.example/x"
