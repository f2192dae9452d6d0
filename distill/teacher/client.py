"""Async client for an OpenAI-compatible chat completions server (vLLM, SGLang, DeepSeek API).

aiohttp rather than the openai SDK: the SDK retries on its own, which would multiply ours and
hide the attempts from our logs. And aiohttp rather than httpx: the worker shares the host's
cores with vLLM's scheduler and detokenizer, and httpx (httpcore on anyio) spent several times
aiohttp's CPU per request (docs/benchmarks.md). One client keeps many requests in flight over a
shared connection pool, because vLLM batches continuously and a fixed batch waits for its
slowest member. Its session is made on the event loop that first uses it and is bound to that
loop: one OpenAITeacher per loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import aiohttp
from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env
from multidict import CIMultiDictProxy
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from yarl import URL

from distill import redact
from distill.config import Settings
from schemas.teacher import TeacherRequest, TeacherResult

logger = logging.getLogger(__name__)

_ERROR_TEXT_LIMIT = 500
# Pooled connections idle longer than this are not reused. Under a server's own keep-alive
# timeout (uvicorn's, in front of vLLM, is 5 s): a connection the server closes as a request is
# sent on it fails that request. Between a run's waves, or between runs, connections sit idle
# that long, and then every request of the next wave failed once and waited out a backoff.
KEEPALIVE_SECONDS = 4.0


class Teacher(Protocol):
    """What the worker needs of a teacher: OpenAITeacher, or a fake in tests."""

    async def complete(self, request: TeacherRequest) -> TeacherResult: ...

    async def healthy(self) -> bool: ...

    async def aclose(self) -> None: ...


class TeacherError(Exception):
    """A teacher call that failed. `retryable` says whether trying again later may succeed."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after

    @property
    def unavailable(self) -> bool:
        """The teacher is unreachable or overloaded (no connection, a timeout, 429, 5xx), as
        opposed to refusing this request."""
        return self.retryable and (self.status is None or self.status == 429 or self.status >= 500)


# The wire format, only as far as we read it; anything else the server adds is ignored.
class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class _Choice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message: _Message
    finish_reason: str | None = None


class _Usage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Completion(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None


class _ModelEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    max_model_len: int | None = None  # vLLM: the context (prompt + completion) it serves


class _TokenCount(BaseModel):
    model_config = ConfigDict(extra="ignore")
    count: int


class _ModelList(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: list[_ModelEntry]


def _without_credentials(url: str) -> tuple[str, str | None]:
    """The URL without user and password, and those as a Basic Authorization header: the URL
    is printed in our error messages and logs, so a password in it must not be. An API key,
    when set, is sent instead (as a bearer token)."""
    try:
        parsed = URL(url)
    except ValueError:
        return url, None  # not a URL at all: the first request says so
    if not (parsed.user or parsed.password):
        return url, None
    pair = f"{parsed.user or ''}:{parsed.password or ''}".encode()
    return str(parsed.with_user(None)), f"Basic {base64.b64encode(pair).decode('ascii')}"


@dataclass(frozen=True, slots=True)
class _Response:
    """One HTTP exchange, read whole: the body is one JSON document."""

    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    content: bytes
    elapsed: float  # seconds from sending the request to the end of the body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class OpenAITeacher:
    """Chat completions with bounded retries: connection errors, timeouts, 429, 5xx and malformed
    200s are tried again (exponential backoff, full jitter); any other 4xx fails at once."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float,
        retries: int,
        backoff_max: float,
        temperature: float = 0.6,
        top_p: float = 0.95,
        max_connections: int = 64,
    ) -> None:
        if retries < 1:
            raise ValueError("retries counts tries and must be at least 1")
        self.base_url, auth = _without_credentials(base_url.rstrip("/"))
        self.model = model
        self.timeout = timeout
        self.retries = retries
        self.backoff_max = backoff_max
        self.temperature = temperature
        self.top_p = top_p
        # A key wins, then the URL's own credentials, then $NETRC or ~/.netrc, as curl reads it.
        authorization = f"Bearer {api_key}" if api_key else auth or _netrc_auth(self.base_url)
        self._headers = {"Authorization": authorization} if authorization else {}
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # At most max_connections requests reach aiohttp at once, so each finds a free
        # connection: time spent waiting for one must not count against the request's timeout
        # nor as its latency.
        self._slots = asyncio.Semaphore(max_connections)
        self._backoff = wait_random_exponential(multiplier=1, max=backoff_max)

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use: aiohttp binds it to the running loop."""
        if self._session is None:
            proxy, proxy_auth = _env_proxy(self.base_url)
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                proxy=proxy,
                proxy_auth=proxy_auth,
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections,
                    limit_per_host=self._max_connections,
                    keepalive_timeout=KEEPALIVE_SECONDS,
                ),
                trace_configs=[_reuse_trace()],
                # asyncio.timeout in _send bounds the whole exchange; aiohttp's own default
                # (5 minutes in total) would cut long chains short.
                timeout=aiohttp.ClientTimeout(total=None),
                # Not aiohttp's trust_env: it reads the environment's proxies and ~/.netrc again
                # for every request, each in a hop to the default thread pool, where they
                # queued behind the worker's database calls (docs/benchmarks.md, run K). The
                # teacher's URL is fixed, so both are read once, above.
                trust_env=False,
            )
        return self._session

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAITeacher:
        return cls(
            base_url=settings.teacher_url,
            model=settings.teacher_model,
            api_key=settings.teacher_api_key,
            timeout=settings.request_timeout,
            retries=settings.request_retries,
            backoff_max=settings.retry_backoff_max,
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_connections=settings.concurrency,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def request(self, messages: list[dict[str, str]], *, max_tokens: int) -> TeacherRequest:
        """A request for this client's model and default sampling (probes and checks; a job's
        request comes from the job: `distill.jobs.lease.ClaimedJob.request`)."""
        return TeacherRequest(
            model=self.model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
        )

    async def complete(self, request: TeacherRequest) -> TeacherResult:
        """One chat completion of exactly `request` (no system prompt is added, nothing of this
        client's own model or sampling is mixed in).

        Raises TeacherError: at once (retryable=False) for a 4xx other than 429, e.g. vLLM's 400
        for a prompt beyond the context length; after `retries` tries (retryable=True) otherwise.
        """
        body = request.body()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._log_retry,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._complete_once(body)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            status = last.status if isinstance(last, TeacherError) else None
            raise TeacherError(
                f"teacher call failed after {self.retries} tries; last error: {last}",
                retryable=True,
                status=status,
            ) from last
        raise AssertionError("unreachable: tenacity either returns, raises, or raises RetryError")

    async def _complete_once(self, body: dict[str, Any]) -> TeacherResult:
        url = f"{self.base_url}/chat/completions"
        response = await self._send("POST", url, json=body)
        try:
            completion = _Completion.model_validate_json(response.content)
        except ValidationError as exc:
            # The body is the model's output: it is stored nowhere and logged nowhere, so the
            # message says what is wrong with it, not what it says.
            raise TeacherError(
                f"malformed response from {redact.url(url)} (HTTP {response.status}, "
                f"{len(response.content)} bytes): {exc.error_count()} validation errors",
                retryable=True,
            ) from None
        choice = completion.choices[0]
        message = choice.message
        usage = completion.usage or _Usage()
        return TeacherResult(
            text=message.content or "",
            reasoning_content=message.reasoning_content or message.reasoning or None,
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            # From sending the request to the end of the body: no queueing, no backoff.
            latency_s=response.elapsed,
            model=completion.model or str(body["model"]),
        )

    async def healthy(self, *, timeout: float = 10.0) -> bool:
        """Whether the teacher answers a one-token request of its model, once, within
        `timeout`: the outage probe (vLLM's /health can be up while its engine fails)."""
        body = self.request([{"role": "user", "content": "Say OK."}], max_tokens=1).body()
        try:
            async with asyncio.timeout(timeout):
                await self._complete_once(body)
        except TeacherError as exc:
            return not exc.unavailable
        except TimeoutError:
            return False
        return True

    async def list_models(self) -> list[str]:
        """Names the server serves (GET /models); one try, for start-up checks."""
        return list(await self.served_models())

    async def served_models(self) -> dict[str, int | None]:
        """Served name -> its context length (`max_model_len`, which vLLM reports; None where
        the server does not say). One try."""
        url = f"{self.base_url}/models"
        response = await self._send("GET", url)
        try:
            listing = _ModelList.model_validate_json(response.content)
        except ValidationError:
            raise TeacherError(
                f"{redact.url(url)} did not return a model list: {excerpt(response.text)!r}",
                retryable=True,
            ) from None
        return {entry.id: entry.max_model_len for entry in listing.data}

    async def prompt_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """Tokens of `messages` after the server's chat template (vLLM's POST /tokenize, which
        sits beside /v1); None when the server has no such endpoint. One try."""
        root = self.base_url.removesuffix("/v1")
        try:
            response = await self._send(
                "POST", f"{root}/tokenize", json={"model": self.model, "messages": messages}
            )
        except TeacherError as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                return None  # not vLLM, or an older one
            raise
        try:
            return _TokenCount.model_validate_json(response.content).count
        except ValidationError:
            return None

    async def _send(self, method: str, url: str, *, json: Any = None) -> _Response:
        """One HTTP exchange; every failure becomes a TeacherError that says whether to retry."""
        try:
            async with self._slots:
                reused: dict[str, bool] = {}
                try:
                    response = await self._exchange(method, url, json, reused)
                except aiohttp.ServerDisconnectedError:
                    if not reused:
                        raise
                    # A pooled connection the server had just closed (its keep-alive ran out
                    # as the request went out): not a failure of the server, so sent again at
                    # once on a new connection, without a try or a backoff.
                    logger.debug("%s %s: a reused connection was closed; sent again", method, url)
                    response = await self._exchange(method, url, json, {})
        except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            raise TeacherError(
                f"no response from {redact.url(url)} within {self.timeout:g}s", retryable=True
            ) from None
        except (aiohttp.NonHttpUrlClientError, aiohttp.InvalidUrlClientError):
            raise TeacherError(
                f"teacher URL {redact.url(url)!r} must start with http:// or https:// "
                "(DISTILL_TEACHER_URL)",
                retryable=False,
            ) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # Refused, reset, DNS, TLS, or a connection dropped mid-body.
            raise TeacherError(
                f"cannot reach the teacher at {redact.url(url)} ({type(exc).__name__}: "
                f"{redact.text(str(exc))}); is the server running and DISTILL_TEACHER_URL right?",
                retryable=True,
            ) from None
        except aiohttp.ClientError as exc:  # e.g. a malformed status line or headers
            raise TeacherError(
                f"request to {redact.url(url)} failed ({type(exc).__name__})", retryable=True
            ) from None
        status = response.status
        if status < 400:
            return response
        message = f"HTTP {status} from {redact.url(url)}: {_server_message(response)}"
        if status == 429 or status >= 500:
            raise TeacherError(
                message, retryable=True, status=status, retry_after=_retry_after(response)
            )
        raise TeacherError(message, retryable=False, status=status)

    async def _exchange(
        self, method: str, url: str, json: Any, reused: dict[str, bool]
    ) -> _Response:
        """One request and its whole body; `reused` is marked when it went out on a pooled
        connection."""
        started = time.perf_counter()
        # This bounds the whole exchange, the body's last byte included.
        async with asyncio.timeout(self.timeout):
            request = self._client().request(method, url, json=json, trace_request_ctx=reused)
            async with request as raw:
                content = await raw.read()
        return _Response(
            raw.status, raw.reason or "", raw.headers, content, time.perf_counter() - started
        )

    def _wait(self, state: RetryCallState) -> float:
        delay = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TeacherError) and exc.retry_after is not None:
            # Honour the server's Retry-After, but never beyond our own cap.
            delay = max(delay, exc.retry_after)
        return min(delay, self.backoff_max)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep = state.next_action.sleep if state.next_action else 0.0
        logger.warning(
            "teacher call failed (%s); try %d of %d in %.2fs",
            exc,
            state.attempt_number + 1,
            self.retries,
            sleep,
        )


def _env_proxy(url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy for `url` from HTTP_PROXY / HTTPS_PROXY / NO_PROXY (and its credentials from
    ~/.netrc), as curl and httpx read them: aiohttp's own lookup, done once."""
    try:
        return get_env_proxy_for_url(URL(url))
    except (LookupError, ValueError):  # none for this host, or not a URL (the request says so)
        return None, None


def _netrc_auth(url: str) -> str | None:
    """A Basic Authorization header for `url`'s host from $NETRC or ~/.netrc, if it has an
    entry."""
    try:
        host = URL(url).host
        return basicauth_from_netrc(netrc_from_env(), host).encode() if host else None
    except (LookupError, ValueError):  # no file or no entry; or not a URL
        return None


def _reuse_trace() -> aiohttp.TraceConfig:
    """Marks a request's `trace_request_ctx` (a dict) when it is sent on a reused connection."""

    async def reused(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceConnectionReuseconnParams
    ) -> None:
        if isinstance(context.trace_request_ctx, dict):
            context.trace_request_ctx["reused"] = True

    trace = aiohttp.TraceConfig()
    trace.on_connection_reuseconn.append(reused)
    return trace


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, TeacherError) and exc.retryable


def _server_message(response: _Response) -> str:
    """The error text the server sent: vLLM's {"object": "error", "message": ...}, OpenAI's
    {"error": {"message": ...}}, FastAPI's {"detail": ...}, or the raw body."""
    try:
        payload = json.loads(response.content)
    except ValueError:
        return excerpt(response.text) or response.reason
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for key in ("message", "detail", "error"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value
    return excerpt(response.text)


def _retry_after(response: _Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None  # absent, or an HTTP date: fall back to our own backoff


def excerpt(text: str, limit: int = _ERROR_TEXT_LIMIT) -> str:
    """`text` stripped and cut to `limit` characters, for messages."""
    text = text.strip()
    return text if len(text) <= limit else f"{text[:limit]}…"
