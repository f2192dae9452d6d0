"""The browser tier: the real `distill ui` in a subprocess on a seeded SQLite database, driven
by Playwright's sync API in Debian's chromium (Playwright's own browser builds are not used).

In CI (the CI variable set) a missing chromium or Playwright fails the tier with the fix to run;
elsewhere it skips, saying so."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from distill.db import make_engine
from distill.migrate import upgrade
from tests.ui.seed import Seeded, seed

TOKEN = "browser-tier-token"
ROOT = Path(__file__).resolve().parents[2]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI needs it: .ci/run installs both)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        _unavailable("chromium is not installed: apt-get update && apt-get install -y chromium")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
        yield launched
        launched.close()


@dataclass(frozen=True)
class Server:
    url: str
    seeded: Seeded
    database_url: str
    token: str | None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start(database_url: str, seeded: Seeded, log: Path, token: str | None) -> Iterator[Server]:
    port = _free_port()
    env = {**os.environ, "DISTILL_DATABASE_URL": database_url}
    env.pop("DISTILL_UI_TOKEN", None)
    if token:
        env["DISTILL_UI_TOKEN"] = token
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "distill", "ui", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + 30
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"distill ui exited: {log.read_text()}")
            try:
                if httpx.get(f"{url}/runs", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"distill ui did not answer in 30 s: {log.read_text()}")
            time.sleep(0.2)
        yield Server(url=url, seeded=seeded, database_url=database_url, token=token)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Seeded]:
    url = f"sqlite:///{tmp_path_factory.mktemp('ui-db') / 'distill.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        return url, seed(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def server(
    database: tuple[str, Seeded], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    url, seeded = database
    log = tmp_path_factory.mktemp("ui-log") / "ui.log"
    yield from _start(url, seeded, log, token=None)


@pytest.fixture(scope="module")
def guarded_server(
    database: tuple[str, Seeded], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    url, seeded = database
    log = tmp_path_factory.mktemp("ui-log") / "ui-token.log"
    yield from _start(url, seeded, log, token=TOKEN)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    context.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: docs/images with DISTILL_UI_SCREENSHOTS=1, else a temp dir."""
    if os.environ.get("DISTILL_UI_SCREENSHOTS"):
        return ROOT / "docs" / "images"
    return tmp_path_factory.mktemp("shots")
