"""Slow answers computed off the request: the export preview reads every finished generation of
its selection (seconds at 100,000), so a page asks for it, gets "computing" at once, and polls.

Results are kept by key (the options and the database's state), a few at a time; one computation
runs at a time, in a process of its own, so the pages stay responsive on 2 cores. A computation
that failed is tried again when asked again."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

KEEP = 16


class Background:
    """Computations keyed by what they compute, run one at a time in a process of their own:
    the export preview is CPU-bound Python for seconds, and in a thread it would hold the GIL
    and slow every page while it runs."""

    def __init__(self, *, keep: int = KEEP) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._futures: OrderedDict[Hashable, tuple[Future[Any], float]] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep

    def submit(
        self, key: Hashable, compute: Callable[..., Any], *args: Any
    ) -> tuple[Future[Any], float]:
        """The computation `compute(*args)` for `key` (a module-level function and picklable
        arguments), the one already started or done, or a new one; and when it started."""
        with self._lock:
            held = self._futures.get(key)
            if held is None or (held[0].done() and held[0].exception() is not None):
                if self._pool is None:
                    # spawn, not fork: the server has threads, and a forked child inherits locks.
                    self._pool = ProcessPoolExecutor(
                        max_workers=1, mp_context=multiprocessing.get_context("spawn")
                    )
                held = (self._pool.submit(compute, *args), time.monotonic())
                self._futures[key] = held
            self._futures.move_to_end(key)
            while len(self._futures) > self._keep:
                self._futures.popitem(last=False)
            return held

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


class Memo:
    """A small thread-safe LRU map for results that a cheap key proves unchanged (a finished
    run's aggregates keyed by its job counts and last finish time)."""

    def __init__(self, *, keep: int = 256) -> None:
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._keep:
                self._items.popitem(last=False)
