"""A real HTTP server that speaks enough of vLLM's OpenAI-compatible API for tests.

In-process (tests)::

    with FakeOpenAIServer(model="test-teacher") as server:
        server.script(Error(503, "overloaded"), Reply("chain</think>The answer is \\boxed{B}."))
        ...  # point the client at server.url; server.calls and server.requests show what it got

Standalone (end-to-end tests), serving until killed::

    python -m tests.support.fake_openai --port 8123 --model test-teacher [--latency 0.05]

Unscripted chat requests get `fake_reply(prompt, max_tokens)`: a deterministic function of the
last user message, so a test can compute the outcome each job should get without the server.
Scripted actions (Reply, Error, Malformed, Delay, Disconnect) are played to chat requests in order,
then the default behaviour resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from types import TracebackType
from typing import Any, Literal, Self

from tests.support.fake_reply import FakeReply, fake_reply, prompt_tokens

__all__ = ["FakeOpenAIServer", "FakeReply", "fake_reply", "prompt_tokens"]

logger = logging.getLogger(__name__)


# --- scripted behaviour ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A completion with exactly these fields (content None is sent as JSON null)."""

    text: str | None = ""
    finish_reason: str | None = "stop"
    reasoning_content: str | None = None  # vLLM < 0.10 / DeepSeek API shape
    reasoning: str | None = None  # newer vLLM shape
    completion_tokens: int | None = None  # None: counted from the text
    model: str | None = None  # None: the server's model


@dataclass(frozen=True)
class Error:
    """An HTTP error with a vLLM-style body {"object": "error", "message": ...}."""

    status: int
    message: str = "error"
    headers: Mapping[str, str] = field(default_factory=dict)
    style: Literal["vllm", "openai"] = "vllm"


@dataclass(frozen=True)
class Malformed:
    """A raw body, by default a 200 that is not JSON."""

    body: str = '{"id": "chatcmpl-broken", "choices": ['
    status: int = 200


@dataclass(frozen=True)
class Delay:
    """Wait (a hang, if longer than the client's timeout), then answer with `then`."""

    seconds: float
    then: Reply | Error | Malformed | None = None  # None: the default behaviour


@dataclass(frozen=True)
class Disconnect:
    """Close the connection without a response."""


Action = Reply | Error | Malformed | Delay | Disconnect


# --- the server --------------------------------------------------------------------------------


class FakeOpenAIServer:
    """GET /health, GET /v1/models and POST /v1/chat/completions (and, with a max_model_len,
    vLLM's POST /tokenize), on a free port by default."""

    def __init__(
        self,
        model: str = "test-teacher",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        max_model_len: int | None = None,
    ) -> None:
        self.model = model
        self.latency = latency
        # Called with each chat request's prompt when no scripted action is left: it may return
        # an action for that request (fault-injection tests: poison prompts, NUL replies).
        self.on_request: Callable[[str], Action | None] | None = None
        self.max_model_len = max_model_len
        self._lock = threading.Lock()
        self._script: deque[Action] = deque()
        self._calls = 0
        self._requests: list[dict[str, Any]] = []
        self._headers: list[dict[str, str]] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._ids = count(1)
        self.stopping = threading.Event()
        self._httpd = _HTTPServer((host, port), _Handler, self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def calls(self) -> int:
        """Chat completion requests received so far (scripted or not)."""
        with self._lock:
            return self._calls

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of those requests, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def max_in_flight(self) -> int:
        """The most chat requests this server was handling at the same moment."""
        with self._lock:
            return self._max_in_flight

    @property
    def headers(self) -> list[dict[str, str]]:
        """The HTTP headers of those requests (names as the client sent them)."""
        with self._lock:
            return list(self._headers)

    def script(self, *actions: Action | Sequence[Action]) -> None:
        """Queue actions for the next chat requests: script(Error(503), Reply("...")) or a list."""
        with self._lock:
            for action in actions:
                self._script.extend(action if isinstance(action, Sequence) else [action])

    def start(self) -> Self:
        # A short poll interval: stop() waits up to one interval for the serving loop to notice.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # wakes handlers sleeping in a Delay
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Called from handler threads.
    def record(self, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        with self._lock:
            self._calls += 1
            self._requests.append(body)
            self._headers.append(dict(headers))

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def next_action(self) -> Action | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def models_body(self) -> dict[str, Any]:
        entry = {"id": self.model, "object": "model", "created": int(time.time())}
        entry |= {"owned_by": "vllm", "root": self.model, "max_model_len": self.max_model_len}
        return {"object": "list", "data": [entry]}

    def completion_body(self, reply: Reply, prompt: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "tool_calls": []}
        if reply.reasoning_content is not None:
            message["reasoning_content"] = reply.reasoning_content
        if reply.reasoning is not None:
            message["reasoning"] = reply.reasoning
        completion_tokens = reply.completion_tokens
        if completion_tokens is None:
            produced = (reply.text or "") + (reply.reasoning_content or reply.reasoning or "")
            completion_tokens = len(produced.split()) + 1
        used = prompt_tokens(prompt)
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                    "stop_reason": None,
                }
            ],
            "usage": {
                "prompt_tokens": used,
                "completion_tokens": completion_tokens,
                "total_tokens": used + completion_tokens,
            },
        }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # A worker opens dozens of connections at once; the default listen backlog of 5 drops SYNs,
    # and each dropped one costs the client a second of retransmit delay.
    request_queue_size = 256

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], fake: FakeOpenAIServer
    ) -> None:
        self.fake = fake
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like uvicorn in front of vLLM
    timeout = 30  # idle keep-alive connections end instead of holding a thread forever
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake teacher: " + format, *args)

    def _stopped(self) -> bool:
        """A stopped server answers nothing, also on connections kept alive from before: it
        drops them, as a killed vLLM does."""
        if self.server.fake.stopping.is_set():
            self.close_connection = True
            return True
        return False

    def do_GET(self) -> None:
        if self._stopped():
            return
        if self.path == "/health":
            self._send(200, b"", "text/plain")
        elif self.path == "/v1/models":
            self._send_json(200, self.server.fake.models_body())
        else:
            self._send_error(Error(404, f"Not Found: {self.path}", style="openai"))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self._stopped():
            return
        if self.path == "/tokenize" and self.server.fake.max_model_len is not None:
            # vLLM's tokenizer endpoint (beside /v1), served when the fake reports a context.
            prompt = _last_user_message(json.loads(raw)["messages"])
            count = prompt_tokens(prompt)
            self._send_json(200, {"count": count, "max_model_len": self.server.fake.max_model_len})
            return
        if self.path != "/v1/chat/completions":
            self._send_error(Error(404, f"Not Found: {self.path}", style="openai"))
            return
        try:
            body = json.loads(raw)
            prompt = _last_user_message(body["messages"])
            max_tokens = int(body.get("max_tokens") or 16)
        except (ValueError, KeyError, TypeError) as exc:
            self._send_error(Error(400, f"invalid request: {exc}"))
            return
        fake = self.server.fake
        fake.record(body, dict(self.headers.items()))
        if body.get("model") != fake.model:
            self._send_error(Error(404, f"The model `{body.get('model')}` does not exist."))
            return
        action = fake.next_action()
        if action is None and fake.on_request is not None:
            action = fake.on_request(prompt)
        with fake.in_flight():
            if fake.latency:
                fake.stopping.wait(fake.latency)
            if isinstance(action, Delay):
                fake.stopping.wait(action.seconds)
                action = action.then
            if self._stopped():  # stopped while this request was being answered
                return
            try:
                self._play(action, prompt, max_tokens)
            except (BrokenPipeError, ConnectionResetError):
                logger.debug("fake teacher: client went away before the response")

    def _play(self, action: Action | None, prompt: str, max_tokens: int) -> None:
        fake = self.server.fake
        if isinstance(action, Error):
            self._send_error(action)
        elif isinstance(action, Malformed):
            self._send(action.status, action.body.encode(), "application/json")
        elif isinstance(action, Disconnect):
            self.close_connection = True
        elif isinstance(action, Reply):
            self._send_json(200, fake.completion_body(action, prompt))
        else:
            used = prompt_tokens(prompt)
            if fake.max_model_len is not None and used + max_tokens > fake.max_model_len:
                self._send_error(
                    Error(400, _context_length_message(fake.max_model_len, used, max_tokens))
                )
                return
            reply = fake_reply(prompt, max_tokens)
            scripted = Reply(
                reply.text, reply.finish_reason, completion_tokens=reply.completion_tokens
            )
            self._send_json(200, fake.completion_body(scripted, prompt))

    def _send_error(self, error: Error) -> None:
        if error.style == "vllm":
            body: dict[str, Any] = {"object": "error", "message": error.message}
            kind = _ERROR_TYPES.get(error.status, "InternalServerError")
            body |= {"type": kind, "param": None, "code": error.status}
        else:
            body = {"error": {"message": error.message, "type": "error", "code": error.status}}
        self._send_json(error.status, body, error.headers)

    def _send_json(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 429: "RateLimitError"}


def _last_user_message(messages: Iterable[Mapping[str, Any]]) -> str:
    contents = [m["content"] for m in messages if m.get("role") == "user"]
    if not contents or not isinstance(contents[-1], str):
        raise ValueError("no user message with text content")
    return contents[-1]


def _context_length_message(limit: int, prompt: int, completion: int) -> str:
    # vLLM's wording, which the client must pass through to the user.
    return (
        f"This model's maximum context length is {limit} tokens. However, you requested "
        f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
        "Please reduce the length of the messages or completion."
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible teacher for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default="test-teacher")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each request")
    parser.add_argument("--max-model-len", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    server = FakeOpenAIServer(
        args.model,
        host=args.host,
        port=args.port,
        latency=args.latency,
        max_model_len=args.max_model_len,
    )
    print(f"fake teacher {args.model} serving at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
