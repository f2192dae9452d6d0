"""Benchmark `distill ui`: each page's response time on N generations (default 100,000).

Builds a database of realistic size with bulk inserts (SQLite by default, or --url for an empty
PostgreSQL database): 57 subjects, R1-like chains of 1-8k characters, ~65 % correct, two runs
(a finished one and one still running, with queued and running jobs), finish times spread over
hours, one 20,000-token chain. Then starts the real `distill ui` in a subprocess and times every
page with httpx: the first request (nothing cached) and the median of --repeat more; and how
long the export preview takes to be ready (it is computed in the background).

    .venv/bin/python benchmarks/bench_ui.py                        # 100k on SQLite
    .venv/bin/python benchmarks/bench_ui.py --db /tmp/ui.db        # keep (or reuse) the file
    .venv/bin/python benchmarks/bench_ui.py --analyze              # ANALYZE first (planner stats)
    .venv/bin/python benchmarks/bench_ui.py --url ... --vacuum     # VACUUM ANALYZE first
    .venv/bin/python benchmarks/bench_ui.py --url postgresql+psycopg://postgres@127.0.0.1/uibench

A database that already holds generations is measured as it is (not built again).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: benchmarks/ is not a package on the path
    sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import func, insert, select, text  # noqa: E402

from benchmarks.synthetic import TEACHER, WORDS, insert_run, question_row  # noqa: E402
from distill.choices import LETTERS  # noqa: E402
from distill.db import make_engine  # noqa: E402
from distill.migrate import upgrade  # noqa: E402
from distill.models import Generation, Job, JobStatus, Outcome, Question  # noqa: E402
from distill.prompts import PROMPT_VERSION  # noqa: E402

BATCH = 5000
RARE = "zebrafish"  # in one chain only: a search that must read nearly every chain


def _chain(rng: random.Random, n_words: int | None = None) -> str:
    n = n_words or rng.randint(150, 1300)  # ~1-8k characters
    words = rng.choices(WORDS, k=n)
    lines = [" ".join(words[i : i + 15]) + "." for i in range(0, n, 15)]
    return "\n".join(lines)


def build_db(url: str, *, generations: int, samples: int, seed: int = 0) -> int:
    """Fill an empty, migrated database; returns the id of the 20,000-token generation."""
    upgrade(url)
    engine = make_engine(url)
    rng = random.Random(seed)
    n_questions = generations // samples
    live_from = int(n_questions * 0.9)  # the last 10 % of questions are run 2's
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        run_ids = [
            insert_run(conn, samples=samples, questions=n_questions, seed=seed) for _ in range(2)
        ]
    job_id = gen_id = 0
    long_id = 0
    for first in range(0, n_questions + 500, BATCH):
        questions, jobs, gens = [], [], []
        for qi in range(first, min(first + BATCH, n_questions + 500)):
            question = question_row(qi, rng)
            questions.append(question)
            pending = qi >= n_questions  # run 2's questions not answered yet
            run_id = run_ids[1] if qi >= live_from else run_ids[0]
            for k in range(samples):
                job_id += 1
                order = rng.sample(range(4), 4)
                finished = start + timedelta(seconds=job_id * 0.1 + rng.random())
                status = JobStatus.done
                if pending:
                    status = JobStatus.running if k == 0 and qi % 10 == 0 else JobStatus.queued
                jobs.append(
                    {
                        "id": job_id,
                        "run_id": run_id,
                        "question_id": qi + 1,
                        "teacher_model": TEACHER,
                        "prompt_version": PROMPT_VERSION,
                        "sample_index": k,
                        "max_tokens": 8192,
                        "choice_order": order,
                        "status": status,
                        "attempts": 0 if status is JobStatus.queued else 1,
                        "started_at": None if pending else finished - timedelta(seconds=20),
                        "finished_at": None if pending else finished,
                    }
                )
                if pending:
                    continue
                gen_id += 1
                gold = LETTERS[order.index(question["answer_index"])]
                outcome = rng.choices(
                    [Outcome.correct, Outcome.incorrect, Outcome.truncated, Outcome.unparseable],
                    weights=[65, 20, 10, 5],
                )[0]
                chain = _chain(rng)
                if gen_id == 1000:
                    chain = _chain(rng, n_words=15_000)  # ~20,000 tokens
                    outcome, long_id = Outcome.truncated, gen_id
                if gen_id == generations // 2:
                    chain += f" a {RARE} appears."
                letter = {
                    Outcome.correct: gold,
                    Outcome.incorrect: next(x for x in "ABCD" if x != gold),
                }.get(outcome)
                answer = None if outcome is Outcome.truncated else f"\\boxed{{{letter or '?'}}}"
                tokens = 20_000 if gen_id == long_id else len(chain) // 4 + 10
                gens.append(
                    {
                        "id": gen_id,
                        "job_id": job_id,
                        "teacher_model": TEACHER,
                        "request": {},
                        "raw_text": chain + ("</think>" + answer if answer else ""),
                        "response_shape": "open_tag_omitted" if answer else "no_marker",
                        "reasoning": chain,
                        "answer_text": answer,
                        "predicted_letter": letter,
                        "finish_reason": "length" if outcome is Outcome.truncated else "stop",
                        "outcome": outcome,
                        "prompt_tokens": 120,
                        "completion_tokens": tokens,
                        "latency_s": 5.0 + tokens / 60 + rng.random(),
                    }
                )
        with engine.begin() as conn:
            conn.execute(insert(Question), questions)
            conn.execute(insert(Job), jobs)
            if gens:
                conn.execute(insert(Generation), gens)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # ids were given explicitly: move the sequences on
            for table in ("questions", "jobs", "generations", "runs"):
                conn.execute(
                    text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
                )
            # Planner statistics, as autovacuum would gather shortly after a bulk load.
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return long_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pages(long_id: int, some_id: int) -> list[str]:
    return [
        "/runs",
        "/runs/live",
        "/runs/1",
        "/runs/1/live",
        "/runs/2",
        "/runs/2/live",
        "/chains",
        "/chains?page=1000",
        "/chains?run=2",
        "/chains?subject=subject_07",
        "/chains?run=1&subject=subject_07&outcome=correct",
        "/chains?outcome=truncated",
        "/chains?finish=length",
        "/chains?sort=longest",
        "/chains?sort=slowest",
        "/chains?sort=hardest",
        "/chains?dmin=0.5&dmax=1",
        "/chains?q=energy",
        f"/chains?q={RARE}",
        f"/chains/{some_id}",
        f"/chains/{long_id}",
        "/export?per_question=all",  # not computed yet: the page answers at once
        "/export?run=2",  # computed: the page shows the funnel
    ]


def measure(url: str, *, long_id: int, repeat: int) -> None:
    port = _free_port()
    env = {**os.environ, "DISTILL_DATABASE_URL": url}
    env.pop("DISTILL_UI_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "distill", "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            for _ in range(300):
                try:
                    if client.get("/static/ui.css").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            # The export preview first, one selection at a time, so that none waits for another.
            for query in ("run=2", ""):
                t0 = time.perf_counter()
                client.get(f"/export?{query}").raise_for_status()
                while "Computing" in client.get(f"/export/result?{query}").text:
                    time.sleep(0.2)
                print(
                    f"export preview ({query or 'whole database'}), computed in the background: "
                    f"ready {time.perf_counter() - t0:.1f} s after the page was first asked"
                )
            print(f"{'page':<52} {'first':>9} {'median':>9}  size")
            for path in pages(long_id, some_id=long_id + 17):
                t0 = time.perf_counter()
                response = client.get(path)
                first = time.perf_counter() - t0
                response.raise_for_status()
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    client.get(path).raise_for_status()
                    times.append(time.perf_counter() - t0)
                print(
                    f"{path:<52} {first * 1000:7.0f}ms {statistics.median(times) * 1000:7.0f}ms"
                    f"  {len(response.content) / 1000:.0f} kB"
                )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--db", type=Path, help="Reuse (or build) this SQLite file.")
    parser.add_argument("--url", help="A database to fill (if empty) instead, e.g. PostgreSQL.")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--analyze", action="store_true", help="Run ANALYZE before measuring.")
    parser.add_argument(
        "--vacuum",
        action="store_true",
        help="PostgreSQL: VACUUM ANALYZE first (what autovacuum leaves of an insert-mostly table: "
        "the visibility map that index-only scans need).",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{args.db or Path(tmp) / 'ui.db'}"
        engine = make_engine(url)
        built = False
        upgrade(url)
        with engine.connect() as conn:
            empty = not conn.scalar(select(func.count(Generation.id)))
        if empty:
            started = time.perf_counter()
            long_id = build_db(url, generations=args.generations, samples=args.samples)
            built = True
            print(f"built {args.generations} generations in {time.perf_counter() - started:.0f} s")
        with engine.connect() as conn:
            if not built:
                long_id = int(
                    conn.scalar(select(Generation.id).where(Generation.completion_tokens == 20_000))
                    or 1
                )
            count = conn.scalar(select(func.count(Generation.id)))
        if args.vacuum and engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        elif args.analyze or args.vacuum:
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        engine.dispose()
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print(f"{count} generations; load average {load} on {os.cpu_count()} cores")
        measure(url, long_id=long_id, repeat=args.repeat)


if __name__ == "__main__":
    main()
