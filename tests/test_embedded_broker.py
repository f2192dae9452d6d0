"""The embedded broker (DISTILL_BROKER_URL=embedded): a real valkey-server that distill starts,
shares between processes, keeps messages across restarts and stops on demand; and the job queue
on it, end to end, exactly as on an external Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from kombu import Connection
from sqlalchemy import Engine
from typer.testing import CliRunner

from distill.cli import app
from distill.config import Settings, get_settings
from distill.errors import UserError
from distill.jobs.broker import redis_url
from distill.jobs.embedded import EmbeddedBroker, resolve
from distill.models import JobStatus
from distill.teacher.server import free_port
from tests.support.embedded import short_data_dir
from tests.support.factories import add_questions
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.workers import Worker, count

CLI = [sys.executable, "-c", "from distill.cli import main; main()"]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with short_data_dir("dist-eb") as directory:
        yield directory


@pytest.fixture
def embedded(data_dir: Path) -> EmbeddedBroker:
    return EmbeddedBroker(data_dir / "broker")


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DISTILL_DATA_DIR": str(data_dir), "DISTILL_BROKER_URL": "embedded"}
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _put(url: str, n: int) -> None:
    with Connection(url) as conn:
        queue = conn.SimpleQueue("demo-q")
        for i in range(n):
            queue.put({"i": i})
        queue.close()


def _drain(url: str) -> list[int]:
    got: list[int] = []
    with Connection(url) as conn:
        queue = conn.SimpleQueue("demo-q")
        while True:
            try:
                message = queue.get(timeout=0.5)
            except queue.Empty:
                break
            got.append(message.payload["i"])
            message.ack()
        queue.close()
    return got


def test_started_on_first_use_on_a_private_socket_with_an_append_only_file(
    embedded: EmbeddedBroker,
) -> None:
    assert not embedded.answers() and embedded.pid() is None
    url = embedded.ensure()
    assert url == f"redis+socket://{embedded.socket}"
    assert embedded.answers() and embedded.pid() is not None
    assert oct(embedded.socket.stat().st_mode & 0o777) == "0o700"
    with embedded.client() as client:
        config = client.config_get("appendonly")
        assert config["appendonly"] == "yes"
        # No TCP listener: only the socket, whose mode admits this user alone.
        assert client.config_get("port")["port"] == "0"
    assert redis_url(url) == f"unix://{embedded.socket}"


def test_a_second_process_reuses_it_and_it_outlives_the_first(
    data_dir: Path, embedded: EmbeddedBroker
) -> None:
    first = _cli(data_dir, "broker", "start")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("started: ")
    pid = embedded.pid()
    assert pid is not None
    # The process that started it has exited; the server is still there.
    assert embedded.answers()
    second = _cli(data_dir, "broker", "start")
    assert second.stdout.startswith("already running: ") and f"pid {pid}" in second.stdout
    assert embedded.pid() == pid


def test_processes_starting_it_at_once_share_one_server(
    data_dir: Path, embedded: EmbeddedBroker
) -> None:
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: _cli(data_dir, "broker", "url"), range(4)))
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert {r.stdout.strip() for r in runs} == {embedded.url}
    ps = subprocess.run(["pgrep", "-f", str(embedded.socket)], capture_output=True, text=True)
    assert len(ps.stdout.split()) == 1, ps.stdout


def test_messages_survive_a_restart(embedded: EmbeddedBroker) -> None:
    url = embedded.ensure()
    _put(url, 5)
    first = embedded.stop()
    assert first is not None and not embedded.answers()
    url = embedded.ensure()
    assert embedded.pid() != first
    assert sorted(_drain(url)) == [0, 1, 2, 3, 4]


def test_stop_is_clean_and_says_when_nothing_runs(data_dir: Path, embedded: EmbeddedBroker) -> None:
    embedded.ensure()
    pid = embedded.pid()
    stopped = _cli(data_dir, "broker", "stop")
    assert stopped.returncode == 0 and f"stopped (pid {pid})" in stopped.stdout
    assert not embedded.socket.exists() and not embedded.pidfile.exists()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    again = _cli(data_dir, "broker", "stop")
    assert again.returncode == 0 and "not running" in again.stdout
    status = json.loads(_cli(data_dir, "broker", "status", "--json").stdout)
    assert status["running"] is False and status["pid"] is None


def test_a_killed_server_s_socket_and_pid_file_do_not_block_the_next_start(
    embedded: EmbeddedBroker,
) -> None:
    url = embedded.ensure()
    _put(url, 3)
    time.sleep(1.5)  # appendfsync everysec: what was written a second ago is on disk
    pid = embedded.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    while embedded.pid() is not None:
        time.sleep(0.05)
    assert embedded.socket.exists() and embedded.pidfile.exists()  # left behind
    assert not embedded.answers()
    url = embedded.ensure()
    assert embedded.answers() and embedded.pid() not in (None, pid)
    assert sorted(_drain(url)) == [0, 1, 2]


def test_a_pid_file_naming_another_process_is_stale(embedded: EmbeddedBroker) -> None:
    embedded.directory.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        embedded.pidfile.write_text(f"{sleeper.pid}\n")
        embedded.socket.write_text("")  # a plain file where the socket should be
        assert embedded.pid() is None
        embedded.ensure()
        assert embedded.answers() and embedded.pid() != sleeper.pid
        assert sleeper.poll() is None  # not touched
    finally:
        sleeper.kill()


def test_a_socket_path_too_long_for_unix_is_refused_in_one_line(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / ("x" * 120) / "broker")
    with pytest.raises(UserError, match="set DISTILL_DATA_DIR to a shorter directory"):
        broker.ensure()


def test_embedded_resolves_to_the_socket_other_urls_stay(data_dir: Path) -> None:
    external = Settings(broker_url="redis://localhost:6379/0", data_dir=data_dir)
    assert resolve(external) is external
    resolved = resolve(Settings(broker_url="embedded", data_dir=data_dir))
    assert resolved.broker_url == f"redis+socket://{data_dir}/broker/redis.sock"


def _flower_sees_a_worker(url: str) -> bool:
    """Flower on the embedded broker, as `celery --broker "$(distill broker url)" flower`."""
    port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "--broker", url, "flower", f"--port={port}"],
        env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                workers = httpx.get(
                    f"http://127.0.0.1:{port}/api/workers?refresh=1", timeout=10
                ).json()
            except (httpx.HTTPError, ValueError):
                time.sleep(0.5)
                continue
            if workers:
                return True
            time.sleep(0.5)
        return False
    finally:
        flower.terminate()
        flower.wait(timeout=30)


@pytest.mark.e2e
def test_enqueue_worker_status_and_retry_on_the_embedded_broker(
    settings: Settings,
    data_dir: Path,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job queue behaves as on an external Redis: the worker and enqueue resolve
    `embedded` to one shared server; `celery inspect` and Flower reach the worker through it
    (fanout); the worker survives the server's restart."""
    add_questions(engine, 15)
    with FakeOpenAIServer("test-teacher", latency=0.05) as teacher:
        env = {
            "DISTILL_DATABASE_URL": settings.database_url,
            "DISTILL_BROKER_URL": "embedded",
            "DISTILL_DATA_DIR": str(data_dir),
            "DISTILL_TEACHER_URL": teacher.url,
            "DISTILL_TEACHER_MODEL": "test-teacher",
            "DISTILL_MAX_TOKENS": "300",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        worker = Worker(env, tmp_path / "worker.log", 8)
        try:
            result = CliRunner().invoke(app, ["enqueue", "--n", "10", "--samples", "2", "--wait"])
            assert result.exit_code == 0, result.output + worker.tail()
            assert count(engine, JobStatus.done) == 20, worker.tail()
            url = EmbeddedBroker(data_dir / "broker").url
            inspect = subprocess.run(
                [sys.executable, "-m", "celery", "--broker", url, "inspect", "ping", "-t", "5"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert "pong" in inspect.stdout, inspect.stdout + inspect.stderr
            assert _flower_sees_a_worker(url), worker.tail()
            retry = CliRunner().invoke(app, ["retry", "--stuck"])
            assert retry.exit_code == 0 and "re-publishing 0" in retry.output, retry.output
            # Stopped and started again (by the next command that needs it): the worker
            # reconnects, as to a restarted Redis.
            EmbeddedBroker(data_dir / "broker").stop()
            more = CliRunner().invoke(app, ["enqueue", "--n", "5", "--wait"])
            assert more.exit_code == 0, more.output + worker.tail()
            assert count(engine, JobStatus.done) == 25, worker.tail()
        finally:
            worker.stop()
    assert EmbeddedBroker(data_dir / "broker").answers()  # the worker's exit leaves it running
