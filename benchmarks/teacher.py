"""A teacher for benchmarks that costs next to nothing: an OpenAI-compatible server on asyncio
streams that answers every chat completion with the same R1-style reply after `latency` seconds.

Not the tests' fake (tests/support/fake_openai.py, which plays scripted failures on a thread per
request): this one must never be what a benchmark measures.

    python -m benchmarks.teacher --port 8123 --latency 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from types import TracebackType
from typing import Self

REPLY = "Option B fits; the others do not.\n</think>\n\nThe answer is \\boxed{B}."


def _completion(model: str, completion_tokens: int) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 60, "completion_tokens": completion_tokens},
        }
    ).encode()


class InstantTeacher:
    """Serves in a thread of its own; `url` is what DISTILL_TEACHER_URL takes."""

    def __init__(
        self,
        model: str = "bench-teacher",
        *,
        latency: float = 0.0,
        port: int = 0,
        completion_tokens: int = 20,
    ) -> None:
        self.model, self.latency, self.port = model, latency, port
        self.requests = 0
        self._body = _completion(model, completion_tokens)
        self._models = json.dumps({"object": "list", "data": [{"id": model}]}).encode()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="instant-teacher", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        self._started.wait()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._thread.join(timeout=10)

    async def _stop(self) -> None:
        self._server.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        self._loop.call_soon(self._loop.stop)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *headers = head.decode("latin-1").split("\r\n")
                length = 0
                for line in headers:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                if request_line.startswith("GET /v1/models"):
                    body = self._models
                else:
                    self.requests += 1
                    if self.latency:
                        await asyncio.sleep(self.latency)
                    body = self._body
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--model", default="bench-teacher")
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    with InstantTeacher(args.model, latency=args.latency, port=args.port) as teacher:
        print(f"instant teacher {args.model} at {teacher.url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
