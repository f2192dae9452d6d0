"""A worker's memory: the RSS of one real `distill worker` idle, and with 256 and 1,024 requests
in flight.

Each case starts a worker with `--concurrency N` against `benchmarks/teacher.py` answering after
`--latency` seconds (long enough that all N requests are open at once), enqueues 2·N jobs, and
samples the worker's RSS (psutil, every 0.1 s) until they are stored: idle (ready, before the
enqueue), peak, and the number in flight at the peak (the teacher's open requests). SQLite and
the embedded broker; the database and the broker are not in the figure.

    python -m benchmarks.bench_worker_memory                   # 256 and 1024
    python -m benchmarks.bench_worker_memory --in-flight 64 256 --latency 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_queue import MODEL, _done, _run, questions_file  # noqa: E402
from distill.jobs.embedded import EmbeddedBroker  # noqa: E402
from distill.teacher.server import DISTILL_CLI, free_port  # noqa: E402

MIB = 1024 * 1024


def _in_flight(teacher: psutil.Process, port: int) -> int:
    """Requests open at the teacher: its established connections on its port."""
    try:
        return sum(
            1
            for c in teacher.net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
        )
    except psutil.Error:
        return 0


def run_case(in_flight: int, latency: float, timeout: float) -> dict[str, Any]:
    port = free_port()
    teacher = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.teacher", "--port", str(port), "--model", MODEL,
         "--latency", str(latency)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    broker_dir = Path(tempfile.mkdtemp(prefix="bm-", dir="/tmp"))  # a short unix socket path
    broker = EmbeddedBroker(broker_dir / "broker")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
    env.update(
        DISTILL_DATABASE_URL=f"sqlite:///{work / 'bench.db'}",
        DISTILL_BROKER_URL=broker.ensure(),
        DISTILL_TEACHER_URL=f"http://127.0.0.1:{port}/v1",
        DISTILL_TEACHER_MODEL=MODEL,
        DISTILL_MAX_TOKENS="64",
        DISTILL_REQUEST_TIMEOUT=str(latency * 4 + 60),
    )
    jobs = 2 * in_flight
    log = work / "worker.log"
    worker: subprocess.Popen[bytes] | None = None
    try:
        time.sleep(1.0)
        _run([*DISTILL_CLI, "db", "upgrade"], env)
        _run([*DISTILL_CLI, "import", str(questions_file(work / "q.jsonl", jobs))], env)
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [*DISTILL_CLI, "worker", "--concurrency", str(in_flight)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while "ready" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"the worker did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        time.sleep(2.0)
        handle, teacher_handle = psutil.Process(worker.pid), psutil.Process(teacher.pid)
        idle = handle.memory_info().rss
        _run([*DISTILL_CLI, "enqueue", "--n", str(jobs)], env)
        peak, open_at_peak, most_open = idle, 0, 0
        started = time.monotonic()
        while _done(env["DISTILL_DATABASE_URL"]) < jobs:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"only {_done(env['DISTILL_DATABASE_URL'])} of {jobs} done")
            rss = handle.memory_info().rss
            opened = _in_flight(teacher_handle, port)
            most_open = max(most_open, opened)
            if rss > peak:
                peak, open_at_peak = rss, opened
            time.sleep(0.1)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=90)
            except subprocess.TimeoutExpired:
                worker.kill()
        teacher.terminate()
        teacher.wait(timeout=30)
        broker.stop()
        shutil.rmtree(broker_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "concurrency": in_flight,
        "jobs": jobs,
        "idle_rss_mib": round(idle / MIB),
        "peak_rss_mib": round(peak / MIB),
        "open_requests_at_peak": open_at_peak,
        "most_open_requests": most_open,
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-flight", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--latency", type=float, default=20.0, help="the teacher's, seconds")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for n in args.in_flight:
        result = run_case(n, args.latency, args.timeout)
        print(json.dumps(result), flush=True)
        results.append(result)
    print(f"\n{platform.node()} {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print(f"{'in flight':>10} {'idle RSS':>10} {'peak RSS':>10} {'open at peak':>13}")
    for r in results:
        print(
            f"{r['concurrency']:>10} {r['idle_rss_mib']:>7} MiB {r['peak_rss_mib']:>7} MiB "
            f"{r['open_requests_at_peak']:>13}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
