"""`distill enqueue` of a million jobs: wall time, the command's peak RSS, what it leaves in the
broker, and how long a worker's reconciler pass takes to top the queue up.

Builds a SQLite database of N questions with bulk inserts (benchmarks/synthetic.py),
then runs the real `distill enqueue --n N --samples S` in a child process against the embedded
broker, sampling its RSS; reports the jobs sent now and left for the workers (back-pressure,
DISTILL_BROKER_BACKLOG), the messages and Redis memory, then drains the queue once and times one
`distill reconcile` pass (what every worker runs) refilling it.

    python -m benchmarks.bench_enqueue                              # 250,000 × 4 = 1,000,000 jobs
    python -m benchmarks.bench_enqueue --questions 20000 --samples 4 --backlog 1000000000
    PYTHONPATH=/tmp/before python benchmarks/bench_enqueue.py ...  # another checkout's enqueue
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import func, insert, select, update  # noqa: E402

from benchmarks.synthetic import question_row  # noqa: E402
from distill.db import make_engine  # noqa: E402
from distill.jobs.embedded import EmbeddedBroker  # noqa: E402
from distill.models import Job, Question, utcnow  # noqa: E402
from distill.teacher.server import DISTILL_CLI  # noqa: E402

MIB = 1024 * 1024


def build_db(url: str, questions: int, env: dict[str, str], seed: int = 0) -> None:
    # Migrated by the CLI under test (a baseline's own schema), filled here.
    _timed([*DISTILL_CLI, "db", "upgrade"], env)
    engine = make_engine(url)
    rng = random.Random(seed)
    for start in range(0, questions, 10_000):
        rows = [question_row(qi, rng) for qi in range(start, min(start + 10_000, questions))]
        with engine.begin() as conn:
            conn.execute(insert(Question), rows)
    engine.dispose()


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (sampled every 50 ms) and stdout of a child process."""
    started = time.monotonic()
    # From a directory of its own: `python -c` puts the working directory first on sys.path,
    # which would shadow a PYTHONPATH pointing at another checkout (a baseline).
    child = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    handle = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, handle.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    out, err = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command[3:])} failed: {err.strip()[-2000:]}")
    return time.monotonic() - started, peak, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=250_000)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--backlog", type=int, help="DISTILL_BROKER_BACKLOG (default: its own)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-enqueue-"))
    broker_dir = Path(tempfile.mkdtemp(prefix="be-", dir="/tmp"))  # a short unix socket path
    broker = EmbeddedBroker(broker_dir / "broker")
    url = f"sqlite:///{work / 'bench.db'}"
    result: dict[str, Any] = {"questions": args.questions, "samples": args.samples}
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
        env.update(
            DISTILL_DATABASE_URL=url,
            DISTILL_BROKER_URL=broker.ensure(),
            DISTILL_TEACHER_URL="http://127.0.0.1:9/v1",  # none: the budget check only warns
        )
        started = time.monotonic()
        build_db(url, args.questions, env)
        result["build_s"] = round(time.monotonic() - started, 1)
        if args.backlog is not None:
            env["DISTILL_BROKER_BACKLOG"] = str(args.backlog)
        client = broker.client()
        before = int(client.info("memory")["used_memory"])
        command = [*DISTILL_CLI, "enqueue", "--n", str(args.questions)]
        seconds, peak, out = _timed([*command, "--samples", str(args.samples), "--json"], env)
        summary = json.loads(out.strip().splitlines()[-1])
        queues = [k for k in client.scan_iter("distill.*") if client.type(k) == b"list"]
        messages = sum(int(client.llen(q)) for q in queues)
        result.update(
            jobs=summary["jobs"],
            enqueue_s=round(seconds, 1),
            enqueue_peak_rss_mib=round(peak / MIB),
            # (a distill from before back-pressure, run as --baseline, sent everything)
            sent=summary.get("sent", summary["jobs"]),
            deferred=summary.get("deferred", 0),
            messages=messages,
            redis_mib=round((int(client.info("memory")["used_memory"]) - before) / MIB, 1),
        )
        # The workers take the first part; one reconciler pass sends the next.
        for queue in queues:
            client.delete(queue)
        engine = make_engine(url)
        with engine.begin() as conn:  # past the grace, as a worker would find them later
            conn.execute(update(Job).values(updated_at=utcnow() - timedelta(hours=1)))
        seconds, _, _ = _timed([*DISTILL_CLI, "reconcile", "--json"], env)
        with engine.connect() as conn:
            unsent = conn.execute(
                select(func.count()).select_from(Job).where(Job.published_at.is_(None))
            ).scalar_one()
        engine.dispose()
        result.update(reconcile_s=round(seconds, 1), unsent_after_reconcile=int(unsent))
        client.close()
    finally:
        broker.stop()
        shutil.rmtree(broker_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result), flush=True)
    print(f"\n{platform.node()} {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    for key, value in result.items():
        print(f"{key:>26}: {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
