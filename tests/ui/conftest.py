"""The app in-process (Starlette's TestClient) over the test database, seeded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from distill.ui import create_app
from tests.ui.seed import Seeded, seed

BASE = "http://127.0.0.1"


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed(engine)


@pytest.fixture
def client(engine: Engine, seeded: Seeded) -> Iterator[TestClient]:
    with TestClient(create_app(engine=engine), base_url=BASE) as c:
        yield c
