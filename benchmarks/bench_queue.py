"""The queue's ceiling: end-to-end jobs/s from `distill enqueue` to stored results, through real
`distill worker` processes (Celery, the broker, acks, the database), against a teacher that
answers at once, so that whatever limits the rate is distill's own cost.

Cases side by side in one run: SQLite and PostgreSQL, 1 and 2 worker processes, default
settings (64 in flight per worker). Reported per case: jobs/s (first message published to last
result stored), the workers' CPU seconds per job, and the teacher's CPU (to show it is not the
bottleneck).

    python -m benchmarks.bench_queue --jobs 4000
    python -m benchmarks.bench_queue --jobs 2000 --cases sqlite:1 postgres:2 --profile /tmp/prof
    git worktree add /tmp/before HEAD~1 && python -m benchmarks.bench_queue --baseline /tmp/before

With --profile DIR, py-spy records each case's first worker (speedscope JSON in DIR).
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
import uuid
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from distill.jobs.embedded import EmbeddedBroker  # noqa: E402
from distill.teacher.server import DISTILL_CLI, free_port  # noqa: E402

MODEL = "bench-teacher"
PG_ADMIN = os.environ.get("DISTILL_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def questions_file(path: Path, n: int) -> Path:
    with path.open("w") as handle:
        for i in range(n):
            row = {
                "question": f"Benchmark question {i}: which option?",
                "choices": [f"option {c} of {i}" for c in "ABCD"],
                "answer": i % 4,
                "subject": f"subject-{i % 7}",
            }
            handle.write(json.dumps(row) + "\n")
    return path


def _database(kind: str, work: Path) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite:///{work / 'bench.db'}", None
    import psycopg

    name = f"distill_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    base = PG_ADMIN.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0]
    return f"{base}/{name}", drop


# Children run from a directory of their own: `python -c` puts the working directory first on
# sys.path, and from the repository it would shadow a --baseline tree's PYTHONPATH.
NEUTRAL_CWD = tempfile.gettempdir()


def _run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, cwd=NEUTRAL_CWD
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[3:])} failed: {done.stderr.strip()[-2000:]}")


def _cpu(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _done(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM generations")).scalar_one())
    finally:
        engine.dispose()


def run_case(
    kind: str, workers: int, jobs: int, teacher_url: str, args: Any, *, tree: Path | None = None
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-queue-{kind}-"))
    db_url, drop = _database(kind, work)
    data_dir = Path(tempfile.mkdtemp(prefix="bq-", dir="/tmp"))
    broker = EmbeddedBroker(data_dir / "broker")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
    env.update(
        DISTILL_DATABASE_URL=db_url,
        DISTILL_BROKER_URL=broker.ensure(),
        DISTILL_TEACHER_URL=teacher_url,
        DISTILL_TEACHER_MODEL=MODEL,
        DISTILL_MAX_TOKENS="64",
    )
    # Another checkout's distill, or this one's, same interpreter.
    env["PYTHONPATH"] = str(tree if tree is not None else REPO_ROOT)
    cli = [*DISTILL_CLI]
    procs: list[subprocess.Popen[bytes]] = []
    spies: list[subprocess.Popen[bytes]] = []
    try:
        _run([*cli, "db", "upgrade"], env)
        _run([*cli, "import", str(questions_file(work / "q.jsonl", jobs))], env)
        for i in range(workers):
            log = (work / f"worker{i}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [*cli, "worker", "--hostname", f"bench{i}@%h"],
                    env=env,
                    cwd=NEUTRAL_CWD,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        # Ready: every worker logged its start line (it checked database, broker and teacher).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            logs = [(work / f"worker{i}.log").read_text(errors="replace") for i in range(workers)]
            if all("ready" in text for text in logs):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"workers did not start: {logs}")
        time.sleep(1.0)
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            out = args.profile / f"{kind}-{workers}w.speedscope.json"
            spy = str(Path(sys.executable).parent / "py-spy")
            spies.append(
                subprocess.Popen(
                    [spy, "record", "-p", str(procs[0].pid), "-o", str(out), "-f", "speedscope",
                     "-r", "50", "--nonblocking"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        handles = [psutil.Process(p.pid) for p in procs]
        cpu_before = sum(_cpu(h) for h in handles)
        teacher_before = _cpu(psutil.Process(args.teacher_pid))
        started = time.monotonic()
        _run([*cli, "enqueue", "--n", str(jobs)], env)
        enqueued = time.monotonic() - started
        while _done(db_url) < jobs:
            if time.monotonic() - started > args.timeout:
                raise RuntimeError(f"{kind}×{workers}: only {_done(db_url)} of {jobs} done")
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        cpu = sum(_cpu(h) for h in handles) - cpu_before
        teacher_cpu = _cpu(psutil.Process(args.teacher_pid)) - teacher_before
    finally:
        for spy in spies:
            spy.send_signal(2)
            spy.wait(timeout=60)
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
        if broker.logfile.exists():
            shutil.copy(broker.logfile, Path(tempfile.gettempdir()) / "bench-queue-broker.log")
        for i in range(workers):
            log = work / f"worker{i}.log"
            if log.exists():
                shutil.copy(log, Path(tempfile.gettempdir()) / f"bench-queue-worker{i}.log")
        shutil.rmtree(data_dir, ignore_errors=True)
        if drop is not None:
            drop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "case": f"{kind} × {workers} worker(s)" + (" [baseline]" if tree is not None else ""),
        "jobs": jobs,
        "seconds": round(elapsed, 2),
        "enqueue_seconds": round(enqueued, 2),
        "jobs_per_s": round(jobs / elapsed, 1),
        "worker_cpu_ms_per_job": round(1000 * cpu / jobs, 2),
        "teacher_cpu_s": round(teacher_cpu, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument(
        "--cases", nargs="+", default=["sqlite:1", "sqlite:2", "postgres:1", "postgres:2"]
    )
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--rounds", type=int, default=1, help="repeats; the median is reported")
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another version (git worktree add DIR REV): each case runs there "
        "too, alternating, for a before/after ratio",
    )
    args = parser.parse_args()
    port = free_port()
    teacher = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.teacher", "--port", str(port), "--model", MODEL],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
    )
    args.teacher_pid = teacher.pid
    time.sleep(1.5)
    results = []
    try:
        url = f"http://127.0.0.1:{port}/v1"
        runs: dict[str, list[dict[str, Any]]] = {}
        for round_ in range(args.rounds):
            for case in args.cases:
                kind, _, n = case.partition(":")
                trees = [None] if args.baseline is None else [args.baseline, None]
                # Alternate which tree goes first, so neither always gets the quieter moment.
                for tree in trees if round_ % 2 == 0 else trees[::-1]:
                    result = run_case(kind, int(n or 1), args.jobs, url, args, tree=tree)
                    print(json.dumps(result), flush=True)
                    runs.setdefault(result["case"], []).append(result)
        for case_runs in runs.values():
            median = sorted(case_runs, key=lambda r: r["jobs_per_s"])[len(case_runs) // 2]
            results.append({**median, "rounds": [r["jobs_per_s"] for r in case_runs]})
    finally:
        teacher.terminate()
        teacher.wait(timeout=30)
    print(f"\n{platform.node()} {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print(
        f"{'case (median of rounds)':40} {'jobs/s':>8} {'worker ms CPU/job':>18} "
        f"{'teacher CPU s':>14}  rounds"
    )
    for r in results:
        print(
            f"{r['case']:40} {r['jobs_per_s']:>8} {r['worker_cpu_ms_per_job']:>18} "
            f"{r['teacher_cpu_s']:>14}  {r['rounds']}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
