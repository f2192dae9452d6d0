"""A data directory for tests that start the embedded broker: short, because the broker's unix
socket lives in it (~104 bytes at most, and pytest's tmp paths are long); its broker stopped and
the directory removed afterwards."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distill.jobs.embedded import EmbeddedBroker


@contextmanager
def short_data_dir(prefix: str) -> Iterator[Path]:
    directory = Path(f"/tmp/{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**6}")
    try:
        yield directory
    finally:
        EmbeddedBroker(directory / "broker").stop()
        shutil.rmtree(directory, ignore_errors=True)
