"""No command prints a secret: passwords inside broker, database and teacher URLs and the
teacher API key stay out of output, errors and --json, on the paths where something failed."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from distill.cli import app
from distill.config import Settings, get_settings
from distill.teacher.server import free_port
from tests.support.factories import add_questions, enqueue
from tests.support.fake_openai import FakeOpenAIServer

runner = CliRunner()
PASSWORD = "pa55-canary-e1"
API_KEY = "sk-canary-9d"


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()


def _clean(output: str) -> str:
    assert PASSWORD not in output and API_KEY not in output, output
    assert "Traceback" not in output, output
    return output


def _dead_broker() -> str:
    return f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"


def test_enqueue_retry_and_reconcile_with_the_broker_down(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, DISTILL_BROKER_URL=_dead_broker())
    add_questions(engine, 2)
    first = runner.invoke(app, ["enqueue", "--n", "1"])
    assert "redis://***@127.0.0.1" in _clean(first.output)
    enqueue(engine, 1)
    for args in (["retry", "--stuck"], ["reconcile"], ["reconcile", "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code != 0 and "redis://***@127.0.0.1" in _clean(result.output), args


def test_status_and_teacher_check_with_credentials_in_every_url(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOpenAIServer("test-teacher") as teacher:
        _env(
            monkeypatch,
            DISTILL_BROKER_URL=_dead_broker(),
            DISTILL_TEACHER_URL=teacher.url.replace("http://", f"http://u:{PASSWORD}@"),
            DISTILL_TEACHER_API_KEY=API_KEY,
        )
        add_questions(engine, 1)
        enqueue(engine, 1)
        for args in (["status"], ["status", "--json"], ["teacher", "check"]):
            result = runner.invoke(app, args)
            assert result.exit_code == 0, result.output
            _clean(result.output)
    down = f"http://u:{PASSWORD}@127.0.0.1:{free_port()}/v1"
    _env(monkeypatch, DISTILL_TEACHER_URL=down)
    result = runner.invoke(app, ["teacher", "check"])
    assert result.exit_code != 0 and "cannot reach the teacher at http" in _clean(result.output)


def test_an_unreachable_postgres_url_is_shown_without_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    url = f"postgresql+psycopg://distill:{PASSWORD}@127.0.0.1:{free_port()}/distill"
    _env(monkeypatch, DISTILL_DATABASE_URL=url)
    for args in (["status"], ["enqueue", "--n", "1"], ["db", "upgrade"]):
        result = runner.invoke(app, args)
        assert result.exit_code != 0, (args, result.output)
        assert "127.0.0.1" in _clean(result.output), (args, result.output)
