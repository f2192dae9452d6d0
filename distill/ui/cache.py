"""Slow answers computed off the request: the export preview reads every finished generation of
its selection (seconds at 100,000), so a page asks for it, gets "computing" at once, and polls.

Results are kept by key (the options and the database's state), a few at a time; one computation
runs at a time, in a thread of its own, so the pages stay responsive on 2 cores."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

KEEP = 16


class Background:
    def __init__(self, *, keep: int = KEEP) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="distill-ui")
        self._futures: OrderedDict[Hashable, Future[Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep

    def submit(self, key: Hashable, compute: Callable[[], Any]) -> Future[Any]:
        """The computation for `key`: the one already started or done, or a new one."""
        with self._lock:
            future = self._futures.get(key)
            if future is None:
                future = self._pool.submit(compute)
                self._futures[key] = future
            self._futures.move_to_end(key)
            while len(self._futures) > self._keep:
                self._futures.popitem(last=False)
            return future

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


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
