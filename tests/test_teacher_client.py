"""The teacher client against a real local HTTP server (tests/support/fake_openai.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from distill.config import Settings
from distill.prompts import build_messages, render_user_prompt
from distill.teacher.client import OpenAITeacher, TeacherError
from distill.teacher.parsing import parse_completion
from distill.teacher.probe import probe
from schemas.teacher import TeacherRequest
from tests.support.fake_openai import (
    Delay,
    Disconnect,
    Error,
    FakeOpenAIServer,
    Malformed,
    Reply,
    fake_reply,
)

pytestmark = pytest.mark.anyio

MODEL = "test-teacher"
RETRIES = 3
CLOSED = "Some chain.\n</think>\n\nThe answer is \\boxed{B}."
MESSAGES = build_messages("Which is a prime?", ["4", "6", "7", "9"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(model=MODEL) as fake:
        yield fake


def make_teacher(url: str, **overrides: object) -> OpenAITeacher:
    options: dict[str, object] = {
        "base_url": url,
        "model": MODEL,
        "timeout": 2.0,
        "retries": RETRIES,
        "backoff_max": 0.01,  # real jittered backoff, capped so tests stay fast
    }
    options.update(overrides)
    return OpenAITeacher(**options)  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- what is sent -------------------------------------------------------------------------------


async def test_sends_messages_as_given_with_configured_sampling(server: FakeOpenAIServer) -> None:
    async with make_teacher(server.url, temperature=0.7, top_p=0.9, api_key="sk-test") as teacher:
        await teacher.complete(teacher.request(MESSAGES, max_tokens=321))
        params = teacher.request(MESSAGES, max_tokens=321).params()

    [body] = server.requests
    assert body["messages"] == MESSAGES  # no system prompt added
    assert "seed" not in body  # a per-request seed crashes vLLM's CPU engine
    assert body == {"model": MODEL, "messages": MESSAGES, **params}
    assert params == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 321}
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


async def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_logged(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Errors and logs print the URL: the password is taken out of it first."""
    import base64

    url = server.url.replace("http://", "http://user:pa%40ss@")
    caplog.set_level(logging.DEBUG)
    async with make_teacher(url) as teacher:
        await teacher.complete(teacher.request(MESSAGES, max_tokens=8))
        assert "@" not in teacher.base_url
    expected = "Basic " + base64.b64encode(b"user:pa@ss").decode()
    assert server.headers[0]["Authorization"] == expected
    assert "pa%40ss" not in caplog.text and "pa@ss" not in caplog.text
    async with make_teacher(url, api_key="sk-test") as teacher:  # a key wins over the URL's
        await teacher.complete(teacher.request(MESSAGES, max_tokens=8))
    assert server.headers[1]["Authorization"] == "Bearer sk-test"


async def test_netrc_credentials_are_sent_unless_a_key_is_set(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """$NETRC (or ~/.netrc) for the teacher's host, as curl reads it. A key wins; the two
    together were a ValueError from aiohttp on every request ("Cannot combine AUTHORIZATION
    header with AUTH argument")."""
    import base64

    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login lab password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    async with make_teacher(server.url) as teacher:
        await teacher.complete(teacher.request(MESSAGES, max_tokens=8))
    async with make_teacher(server.url, api_key="sk-test") as teacher:
        await teacher.complete(teacher.request(MESSAGES, max_tokens=8))
    expected = "Basic " + base64.b64encode(b"lab:s3cret").decode()
    assert [h["Authorization"] for h in server.headers] == [expected, "Bearer sk-test"]


async def _recording_proxy(lines: list[str]) -> asyncio.Server:
    """An HTTP proxy that records each request line and answers it with a completion itself."""
    body = json.dumps(
        {"model": MODEL, "choices": [{"message": {"content": CLOSED}, "finish_reason": "stop"}]}
    ).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        lines.append(head[0])
        length = [int(h.split(":")[1]) for h in head if h.lower().startswith("content-length")]
        await reader.readexactly(length[0] if length else 0)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_requests_go_through_the_environment_s_proxy_unless_no_proxy_says_not(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY and NO_PROXY as curl and httpx read them, read once per client."""
    lines: list[str] = []
    proxy = await _recording_proxy(lines)
    port = proxy.sockets[0].getsockname()[1]
    for name in ("no_proxy", "NO_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    unreachable = f"http://127.0.0.1:{closed_port()}/v1"  # answered by the proxy alone
    try:
        async with make_teacher(unreachable) as teacher:
            result = await teacher.complete(teacher.request(MESSAGES, max_tokens=8))
        assert result.text == CLOSED
        assert lines == [f"POST {unreachable}/chat/completions HTTP/1.1"]  # absolute form
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with make_teacher(server.url) as teacher:
            await teacher.complete(teacher.request(MESSAGES, max_tokens=8))
        assert (len(lines), server.calls) == (1, 1)  # straight to the teacher
    finally:
        proxy.close()
        await proxy.wait_closed()


async def test_a_request_takes_no_hop_to_the_thread_pool(server: FakeOpenAIServer) -> None:
    """The worker's loop shares the default thread pool with its database calls (claims,
    stores, heartbeats). aiohttp's trust_env sent two lookups per request there (proxies,
    ~/.netrc), which queued behind those calls and held requests back (docs/benchmarks.md,
    run K)."""
    submitted: list[object] = []

    class Counting(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            submitted.append(fn)
            return super().submit(fn, *args, **kwargs)

    loop = asyncio.get_running_loop()
    pool = Counting(max_workers=2)
    loop.set_default_executor(pool)
    async with make_teacher(server.url) as teacher:
        for _ in range(3):
            await teacher.complete(teacher.request(MESSAGES, max_tokens=8))
    assert server.calls == 3
    assert submitted == []


async def test_from_settings_uses_every_teacher_setting(server: FakeOpenAIServer) -> None:
    settings = Settings(
        teacher_url=server.url + "/",
        teacher_model=MODEL,
        teacher_api_key=None,
        temperature=0.3,
        top_p=0.8,
        request_timeout=12.5,
        request_retries=5,
        retry_backoff_max=0.02,
        concurrency=7,
    )
    async with OpenAITeacher.from_settings(settings) as teacher:
        assert (teacher.base_url, teacher.model) == (server.url, MODEL)
        assert (teacher.timeout, teacher.retries, teacher.backoff_max) == (12.5, 5, 0.02)
        assert teacher.request(MESSAGES, max_tokens=10).params() == {
            "temperature": 0.3,
            "top_p": 0.8,
            "max_tokens": 10,
        }
        await teacher.complete(teacher.request(MESSAGES, max_tokens=10))
    assert "Authorization" not in server.headers[0]


# --- what is returned ---------------------------------------------------------------------------


async def test_default_reply_is_fake_reply_of_the_user_prompt(server: FakeOpenAIServer) -> None:
    async with make_teacher(server.url) as teacher:
        result = await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    expected = fake_reply(render_user_prompt("Which is a prime?", ["4", "6", "7", "9"]), 64)
    assert result.text == expected.text
    assert result.finish_reason == expected.finish_reason
    assert result.completion_tokens == expected.completion_tokens
    assert result.prompt_tokens is not None
    assert result.prompt_tokens > 0
    assert result.model == MODEL
    assert result.latency_s > 0


async def test_reports_the_model_name_the_server_used(server: FakeOpenAIServer) -> None:
    server.script(Reply(CLOSED, model="served-as-this"))
    async with make_teacher(server.url) as teacher:
        result = await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert result.model == "served-as-this"


@pytest.mark.parametrize("content", ["", None])
async def test_empty_content_is_a_result_not_an_error(
    server: FakeOpenAIServer, content: str | None
) -> None:
    server.script(Reply(content, "stop"))
    async with make_teacher(server.url) as teacher:
        result = await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert (result.text, result.reasoning_content, result.finish_reason) == ("", None, "stop")
    assert server.calls == 1


async def test_length_stop_is_a_result_not_an_error(server: FakeOpenAIServer) -> None:
    server.script(Reply("Okay, let me think about", "length", completion_tokens=5))
    async with make_teacher(server.url) as teacher:
        result = await teacher.complete(teacher.request(MESSAGES, max_tokens=5))
    assert (result.finish_reason, result.completion_tokens) == ("length", 5)
    assert server.calls == 1


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_separate_reasoning_field(server: FakeOpenAIServer, field: str) -> None:
    answer, chain = "The answer is \\boxed{C}.", "Nine is 3 squared."
    server.script(
        Reply(answer, reasoning_content=chain)
        if field == "reasoning_content"
        else Reply(answer, reasoning=chain)
    )
    async with make_teacher(server.url) as teacher:
        result = await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert result.reasoning_content == "Nine is 3 squared."
    assert result.text == answer
    parsed = parse_completion(result, n_options=4)
    assert (parsed.shape, parsed.letter) == ("separate_field", "C")


# --- retries ------------------------------------------------------------------------------------


async def test_503_storm_tries_exactly_retries_times(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script([Error(503, "engine overloaded")] * 10)
    with caplog.at_level(logging.WARNING, logger="distill.teacher"):
        async with make_teacher(server.url) as teacher:
            with pytest.raises(TeacherError) as info:
                await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert server.calls == RETRIES
    assert info.value.retryable
    assert info.value.status == 503
    assert "engine overloaded" in str(info.value)
    assert f"after {RETRIES} tries" in str(info.value)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == RETRIES - 1
    assert all("engine overloaded" in r.getMessage() for r in warnings)


async def test_503_then_success(server: FakeOpenAIServer) -> None:
    server.script(Error(503, "restarting"), Reply(CLOSED))
    async with make_teacher(server.url) as teacher:
        result = await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert result.text == CLOSED
    assert server.calls == 2


async def test_429_is_retried_and_retry_after_is_capped_by_backoff_max(
    server: FakeOpenAIServer,
) -> None:
    server.script(Error(429, "slow down", headers={"Retry-After": "30"}), Reply(CLOSED))
    started = time.monotonic()
    async with make_teacher(server.url) as teacher:
        result = await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert result.text == CLOSED
    assert server.calls == 2
    assert time.monotonic() - started < 5  # Retry-After 30 s, but backoff_max is 0.01 s


async def test_timeout_is_retried(server: FakeOpenAIServer) -> None:
    server.script(Delay(5.0), Reply(CLOSED))
    async with make_teacher(server.url, timeout=0.3) as teacher:
        result = await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert result.text == CLOSED
    assert server.calls == 2


async def test_timeouts_until_cap(server: FakeOpenAIServer) -> None:
    server.script([Delay(5.0)] * RETRIES)
    async with make_teacher(server.url, timeout=0.2) as teacher:
        with pytest.raises(TeacherError, match=r"within 0\.2s") as info:
            await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert info.value.retryable
    assert server.calls == RETRIES


@pytest.mark.parametrize(
    "broken",
    [Malformed(), Malformed('{"id": "chatcmpl-1", "choices": []}'), Malformed('{"object": "x"}')],
    ids=["not-json", "no-choices", "no-choices-key"],
)
async def test_malformed_200_is_retried(server: FakeOpenAIServer, broken: Malformed) -> None:
    server.script(broken, Reply(CLOSED))
    async with make_teacher(server.url) as teacher:
        result = await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert result.text == CLOSED
    assert server.calls == 2


async def test_dropped_connection_is_retried(server: FakeOpenAIServer) -> None:
    server.script(Disconnect(), Reply(CLOSED))
    async with make_teacher(server.url) as teacher:
        result = await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert result.text == CLOSED
    assert server.calls == 2


async def test_a_reused_connection_the_server_closed_is_sent_again_at_once(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The server closes a kept-alive connection as the next request goes out on it (its
    keep-alive ran out): the request is sent again on a new connection at once, neither a
    failed try nor a backoff. A new connection dropped is a failure (the test above)."""
    server.script(Reply(CLOSED), Disconnect(), Reply(CLOSED))
    with caplog.at_level(logging.WARNING, logger="distill.teacher"):
        async with make_teacher(server.url) as teacher:
            first = await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
            again = await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert (first.text, again.text, server.calls) == (CLOSED, CLOSED, 3)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_server_that_drops_every_reused_connection_still_fails_its_tries(
    server: FakeOpenAIServer,
) -> None:
    server.script(Reply(CLOSED), *[Disconnect()] * 10)
    async with make_teacher(server.url) as teacher:
        await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
        with pytest.raises(TeacherError, match="after 3 tries"):
            await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    # One try sent again at once (its connection was reused), the others on new connections.
    assert server.calls == 1 + RETRIES + 1


async def test_400_fails_at_once_with_the_server_message() -> None:
    # The real trigger: the fake enforces a context length like vLLM does.
    with FakeOpenAIServer(model=MODEL, max_model_len=100) as server:
        async with make_teacher(server.url) as teacher:
            with pytest.raises(TeacherError) as info:
                await teacher.complete(teacher.request(MESSAGES, max_tokens=4096))
        assert server.calls == 1
    assert not info.value.retryable
    assert info.value.status == 400
    assert "This model's maximum context length is 100 tokens" in str(info.value)


@pytest.mark.parametrize("status", [401, 404, 422])
async def test_other_4xx_fail_at_once(server: FakeOpenAIServer, status: int) -> None:
    server.script(Error(status, f"nope {status}", style="openai"))
    async with make_teacher(server.url) as teacher:
        with pytest.raises(TeacherError, match=f"nope {status}") as info:
            await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert (info.value.retryable, info.value.status) == (False, status)
    assert server.calls == 1


async def test_unknown_model_fails_at_once(server: FakeOpenAIServer) -> None:
    async with make_teacher(server.url, model="not-served") as teacher:
        with pytest.raises(TeacherError, match="`not-served` does not exist") as info:
            await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert not info.value.retryable
    assert server.calls == 1


async def test_connection_refused_is_retried_then_names_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with caplog.at_level(logging.WARNING, logger="distill.teacher"):
        async with make_teacher(url) as teacher:
            with pytest.raises(TeacherError) as info:
                await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert info.value.retryable
    assert url in str(info.value)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == RETRIES - 1


async def test_url_without_scheme_fails_at_once() -> None:
    async with make_teacher("localhost:8000/v1") as teacher:
        with pytest.raises(TeacherError, match="http:// or https://") as info:
            await teacher.complete(teacher.request(MESSAGES, max_tokens=64))
    assert not info.value.retryable


async def test_many_requests_in_flight_at_once() -> None:
    # 16 requests of 0.5 s each must overlap: a client that serialises them would take 8 s.
    with FakeOpenAIServer(model=MODEL, latency=0.5) as server:
        async with make_teacher(server.url) as teacher:
            started = time.monotonic()
            results = await asyncio.gather(
                *(
                    teacher.complete(
                        teacher.request(build_messages(f"Q{i}?", ["a", "b"]), max_tokens=64)
                    )
                    for i in range(16)
                )
            )
            elapsed = time.monotonic() - started
    assert len(results) == 16
    assert server.calls == 16
    assert server.max_in_flight > 8
    assert elapsed < 4.0


async def test_requests_beyond_max_connections_wait_without_timing_out() -> None:
    # 6 requests of 0.3 s through 2 connections: the last waits 0.6 s for a connection, longer
    # than the 0.5 s timeout, which must only count once the request is sent.
    with FakeOpenAIServer(model=MODEL, latency=0.3) as server:
        async with make_teacher(server.url, timeout=0.5, retries=1, max_connections=2) as teacher:
            await asyncio.gather(
                *(
                    teacher.complete(
                        teacher.request(build_messages(f"Q{i}?", ["a", "b"]), max_tokens=64)
                    )
                    for i in range(6)
                )
            )
    assert server.calls == 6
    assert server.max_in_flight == 2


# --- probe (`distill teacher check`) ------------------------------------------------------------


async def test_list_models(server: FakeOpenAIServer) -> None:
    async with make_teacher(server.url) as teacher:
        assert await teacher.list_models() == [MODEL]


@pytest.mark.parametrize(
    ("reply", "shape"),
    [
        (Reply("The answer is \\boxed{B}.", reasoning_content="2+2=4"), "separate_field"),
        (Reply(None, "length", reasoning="Okay, 2 plus 2"), "separate_field"),
        (Reply("<think>\nOkay, 2 plus 2 is", "length"), "tagged"),
        (Reply("Okay.\n</think>\n\nThe answer is \\boxed{B}."), "open_tag_omitted"),
        (Reply("Okay, so 2 plus 2 is", "length"), "no_marker"),
        (Reply("", "stop"), "empty"),
    ],
)
async def test_probe_reports_the_response_shape(
    server: FakeOpenAIServer, reply: Reply, shape: str
) -> None:
    server.script(reply)
    async with make_teacher(server.url) as teacher:
        report = await probe(teacher)
    assert report.shape == shape
    assert (report.model, report.response_model, report.served_models) == (MODEL, MODEL, [MODEL])
    assert report.finish_reason == reply.finish_reason
    assert report.latency_s > 0
    assert report.note
    [body] = server.requests
    assert body["max_tokens"] == 32


async def test_probe_names_the_served_models_when_ours_is_missing() -> None:
    with FakeOpenAIServer(model="some-other-model") as server:
        async with make_teacher(server.url) as teacher:
            with pytest.raises(TeacherError, match="some-other-model") as info:
                await probe(teacher)
        assert server.calls == 0
    assert MODEL in str(info.value)
    assert not info.value.retryable


async def test_probe_of_an_unreachable_server_names_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    async with make_teacher(url) as teacher:
        with pytest.raises(TeacherError, match="cannot reach the teacher") as info:
            await probe(teacher)
    assert url in str(info.value)


async def test_probe_passes_server_errors_through(server: FakeOpenAIServer) -> None:
    server.script(Error(400, "max_tokens must be at least 1"))
    async with make_teacher(server.url) as teacher:
        with pytest.raises(TeacherError, match="max_tokens must be at least 1"):
            await probe(teacher)


# --- the fake as a standalone process -----------------------------------------------------------


def test_fake_server_runs_standalone() -> None:
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "tests.support.fake_openai", "--model", "m1", "--port", "0"]
    proc = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        assert httpx.get(url.removesuffix("/v1") + "/health", timeout=5).status_code == 200
        models = httpx.get(url + "/models", timeout=5).json()
        assert [m["id"] for m in models["data"]] == ["m1"]
        prompt = "Pick one.\n\nA. x\nB. y\nC. z"
        reply = httpx.post(
            url + "/chat/completions",
            json={
                "model": "m1",
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 50,
            },
            timeout=5,
        ).json()
        assert reply["choices"][0]["message"]["content"] == fake_reply(prompt, 50).text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_sends_exactly_the_request_it_is_given(server: FakeOpenAIServer) -> None:
    # A job's request of record: its model and sampling, not this client's own settings.
    async with make_teacher(server.url, temperature=0.9, top_p=0.5) as teacher:
        request = TeacherRequest(
            model=MODEL, messages=MESSAGES, max_tokens=77, temperature=0.2, top_p=0.95
        )
        result = await teacher.complete(request)
    [body] = server.requests
    assert body == request.body()
    assert body == {
        "model": MODEL,
        "messages": MESSAGES,
        "temperature": 0.2,
        "top_p": 0.95,
        "max_tokens": 77,
    }
    assert result.model == MODEL


async def test_a_request_without_sampling_sends_none(server: FakeOpenAIServer) -> None:
    async with make_teacher(server.url) as teacher:
        await teacher.complete(TeacherRequest(model=MODEL, messages=MESSAGES, max_tokens=8))
    [body] = server.requests
    assert body == {"model": MODEL, "messages": MESSAGES, "max_tokens": 8}
