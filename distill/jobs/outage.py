"""A teacher outage pauses a worker instead of failing its jobs.

vLLM takes minutes to restart a 32B model; a run must ride that out. When requests fail in a way
that says "the teacher is gone" (no connection, timeouts, 429/5xx) and either the teacher's
health probe fails too or several requests in a row fail so with no success in between (5xx for
everyone), the gate closes: the worker claims nothing new, requests that failed wait for the gate
and are sent again without being charged an attempt, and a probe runs with backoff until the
teacher answers. A job that fails alone while others succeed is charged as before."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from distill.models import utcnow
from distill.teacher.client import TeacherError

log = logging.getLogger(__name__)

# Failures in a row, with no success between them, that close the gate even when the health
# probe answers: an engine that is up but fails every request.
CONSECUTIVE = 5


class OutageGate:
    def __init__(
        self,
        probe: Callable[[], Awaitable[bool]],
        *,
        probe_max: float = 30.0,
        probe_min: float = 1.0,
    ) -> None:
        self._probe = probe
        self._probe_min, self._probe_max = probe_min, probe_max
        self._open = asyncio.Event()
        self._open.set()
        self._lock = asyncio.Lock()
        self._consecutive = 0
        self.paused_since: datetime | None = None
        self.reason: str | None = None
        self._prober: asyncio.Task[None] | None = None

    @property
    def paused(self) -> bool:
        return not self._open.is_set()

    async def wait_open(self) -> None:
        await self._open.wait()

    def success(self) -> None:
        self._consecutive = 0

    async def is_outage(self, exc: TeacherError) -> bool:
        """True when `exc` is part of an outage (the gate is, or now is, closed): the caller
        waits for the gate and sends again, uncharged. False: the job failed on its own."""
        if not exc.unavailable:
            return False
        async with self._lock:
            if self.paused:
                return True
            self._consecutive += 1
            if self._consecutive < CONSECUTIVE and await self._probe():
                return False
            self._close(str(exc))
            return True

    def _close(self, reason: str) -> None:
        self._open.clear()
        self.paused_since = utcnow()
        self.reason = reason
        log.warning("teacher unavailable (%s): pausing; probing until it answers", reason)
        self._prober = asyncio.get_running_loop().create_task(self._probe_until_back())

    async def _probe_until_back(self) -> None:
        delay = self._probe_min
        started = time.monotonic()
        while True:
            await asyncio.sleep(delay)
            if await self._probe():
                break
            delay = min(delay * 2, self._probe_max)
        log.warning("teacher answers again after %.0fs: resuming", time.monotonic() - started)
        self._consecutive = 0
        self.paused_since = None
        self.reason = None
        self._open.set()

    async def aclose(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
