"""`distill status` at scale: wall time of the real command on 1,000,000 jobs, SQLite and
PostgreSQL, and the time its queries take, measured apart.

Builds each database with bulk inserts (default: 1M jobs of 250k questions × 4 samples in 8 runs;
the last run active: 57 % of it final in the last hour, so the rate window has data, some failed,
running (a tenth with expired leases) and queued; the older runs done, 3 % failed, days ago;
every done job with a generation of --text-chars of raw text; a few referring questions; workers
running, paused, silent, stopped and long gone). Then, in alternating rounds:

- the real commands as subprocesses (`python -m distill status`, `status --json`,
  `status --run R` for the active and for a finished run), whole-process wall time, beside
  `status --json` on an empty database of the same backend: the start-up every status pays;
- `distill.jobs.status.collect` in this process on the same database: the queries alone,
  with each statement's time (SQLAlchemy cursor events).

Before each round the active run's last hour, its leases and the heartbeats are moved to now
(not timed), so that every round sees the same recent window. Medians over --rounds.
`--explain` prints each statement's plan (PostgreSQL: EXPLAIN ANALYZE; SQLite: EXPLAIN QUERY
PLAN).

    python -m benchmarks.bench_status                              # both backends, 1M jobs
    python -m benchmarks.bench_status --keep /tmp/bench-status --explain --rounds 7
    python -m benchmarks.bench_status --backends sqlite --jobs 200000
    python -m benchmarks.bench_status --runs 1 --fresh-run --keep /tmp/bench-fresh  # 1M queued

--keep DIR keeps the databases (SQLite: DIR/status.db; PostgreSQL: a database named after DIR,
bench_status for /tmp/bench-status) and reuses them when they hold --jobs jobs, upgrading the
schema to head first (its time is printed: on a database built before a migration, that is what
the migration costs on a million jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, event, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from distill.choices import OptionOrder  # noqa: E402
from distill.db import make_engine  # noqa: E402
from distill.jobs.status import collect  # noqa: E402
from distill.migrate import upgrade  # noqa: E402
from distill.models import (  # noqa: E402
    Generation,
    Job,
    JobStatus,
    Outcome,
    Question,
    Run,
    Worker,
    utcnow,
)
from distill.prompts import PROMPT_VERSION  # noqa: E402

DISTILL = [sys.executable, "-m", "distill"]
PG_ADMIN = os.environ.get("DISTILL_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEACHER = "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
BATCH = 10_000
_TEXT = (
    "so the option seems plausible but wait let me reconsider the definition of this term "
    "because energy is conserved and the second statement contradicts the first hence"
)
WORDS = _TEXT.split(" ")
OUTCOMES = [
    Outcome.correct,
    Outcome.incorrect,
    Outcome.truncated,
    Outcome.unparseable,
    Outcome.empty,
]
OUTCOME_WEIGHTS = [60, 25, 10, 4, 1]
ACTIVE_FINISHED = 0.57  # the share of the active run that is final (done or failed)


# ---------------------------------------------------------------------------------------- build


def _jobs_of_run(n_jobs: int, runs: int) -> list[range]:
    """Contiguous job indices of each run (by question, so a question's samples share a run)."""
    bounds = [n_jobs * r // runs for r in range(runs + 1)]
    return [range(bounds[r], bounds[r + 1]) for r in range(runs)]


def _state(position: float, *, active: bool, fresh: bool, rng: random.Random) -> JobStatus:
    if active and fresh:
        return JobStatus.queued
    if not active or position < ACTIVE_FINISHED:
        return JobStatus.failed if rng.random() < 0.03 else JobStatus.done
    return JobStatus.running if position < ACTIVE_FINISHED + 0.03 else JobStatus.queued


def build(
    engine: Engine, *, jobs: int, samples: int, runs: int, text_chars: int, fresh: bool = False
) -> None:
    """Fill an empty, migrated database; `now` is stored in the last run's params (bench_now)."""
    rng = random.Random(0)
    now = utcnow()
    n_questions = jobs // samples
    orders = [rng.sample(range(4), 4) for _ in range(24)]
    chain = " ".join(rng.choices(WORDS, k=text_chars // 5))[:text_chars]
    with engine.begin() as conn:
        run_ids = [
            conn.execute(
                insert(Run).returning(Run.id),
                [
                    {
                        "kind": "enqueue",
                        "teacher_model": TEACHER,
                        "prompt_version": PROMPT_VERSION,
                        "params": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 8192}
                        | ({"bench_now": now.isoformat()} if r == runs - 1 else {}),
                        "samples_per_question": samples,
                        "requested_n": n_questions // runs,
                        "seed": r,
                        "created_at": now - timedelta(days=runs - r),
                    }
                ],
            ).scalar_one()
            for r in range(runs)
        ]
    for start in range(0, n_questions, BATCH):
        stop = min(start + BATCH, n_questions)
        questions = [
            {
                "id": q + 1,
                "uid": f"bench-{q:012d}",
                "source": "bench",
                "subject": f"subject_{q % 57:02d}",
                "question": f"Benchmark question {q}: which of these is right?",
                "choices": [f"choice {c} of question {q}" for c in "ABCD"],
                "answer_index": q % 4,
                "option_order": OptionOrder.fixed
                if q % 50 == 0
                else OptionOrder.anchored
                if q % 97 == 0
                else OptionOrder.free,
                "created_at": now - timedelta(days=runs + 1),
            }
            for q in range(start, stop)
        ]
        with engine.begin() as conn:
            conn.execute(insert(Question), questions)
    spans = _jobs_of_run(n_questions * samples, runs)
    for r, span in enumerate(spans):
        active = r == runs - 1
        # Older runs took 6 hours, r days ago; the active one's done jobs finished in the last hour.
        begun = now - timedelta(days=runs - r)
        for start in range(span.start, span.stop, BATCH):
            job_rows, gen_rows = [], []
            for i in range(start, min(start + BATCH, span.stop)):
                position = (i - span.start) / len(span)
                status = _state(position, active=active, fresh=fresh, rng=rng)
                started = finished = lease = None
                if status in (JobStatus.done, JobStatus.failed):
                    if active:
                        finished = now - timedelta(seconds=3600 * (1 - position / ACTIVE_FINISHED))
                    else:
                        finished = begun + timedelta(seconds=6 * 3600 * position)
                    started = finished - timedelta(seconds=rng.uniform(10, 60))
                elif status is JobStatus.running:
                    started = now - timedelta(seconds=rng.uniform(1, 60))
                    # A tenth of them held by a worker that died: the lease ran out.
                    expired = rng.random() < 0.1
                    lease = now + timedelta(seconds=-120 if expired else 90)
                job_rows.append(
                    {
                        "id": i + 1,
                        "run_id": run_ids[r],
                        "question_id": i // samples + 1,
                        "teacher_model": TEACHER,
                        "prompt_version": PROMPT_VERSION,
                        "sample_index": i % samples,
                        "max_tokens": 8192,
                        "choice_order": orders[i % len(orders)],
                        "status": status,
                        "attempts": 0 if status is JobStatus.queued else 1,
                        "lease_token": str(uuid.UUID(int=i)) if lease else None,
                        "lease_expires_at": lease,
                        "last_error": "teacher error: HTTP 500"
                        if status is JobStatus.failed
                        else None,
                        "created_at": begun,
                        "updated_at": finished or started or begun,
                        "started_at": started,
                        "finished_at": finished,
                        "published_at": begun,
                    }
                )
                if status is JobStatus.done:
                    outcome = rng.choices(OUTCOMES, weights=OUTCOME_WEIGHTS)[0]
                    gen_rows.append(
                        {
                            "job_id": i + 1,
                            "teacher_model": TEACHER,
                            "request": {"model": TEACHER, "max_tokens": 8192},
                            "raw_text": chain,
                            "response_shape": "open_tag_omitted",
                            "reasoning": None,
                            "answer_text": "The answer is A.",
                            "predicted_letter": "A",
                            "finish_reason": "length" if outcome is Outcome.truncated else "stop",
                            "outcome": outcome,
                            "prompt_tokens": 150,
                            "completion_tokens": rng.randint(200, 2000),
                            "latency_s": 30.0,
                            "created_at": finished,
                        }
                    )
            with engine.begin() as conn:
                conn.execute(insert(Job), job_rows)
                if gen_rows:
                    conn.execute(insert(Generation), gen_rows)
    with engine.begin() as conn:
        _put_workers(conn, now)
    if engine.dialect.name == "postgresql":
        # What autovacuum does to a table that stopped growing: statistics and visibility map.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


def _put_workers(conn: Any, now: datetime) -> None:
    conn.execute(Worker.__table__.delete())
    rows = []
    for k in range(200):  # gone for days: outside status's 10-minute window
        at = now - timedelta(days=1 + k / 10)
        rows.append(("old", k, at, None, at))
    rows += [
        ("gpu", 0, now - timedelta(seconds=3), None, None),
        ("gpu", 1, now - timedelta(seconds=8), None, None),
        ("gpu", 2, now - timedelta(seconds=5), now - timedelta(seconds=40), None),  # paused
        ("gpu", 3, now - timedelta(seconds=200), None, None),  # silent
        ("gpu", 4, now - timedelta(seconds=100), None, now - timedelta(seconds=100)),  # stopped
    ]
    conn.execute(
        insert(Worker),
        [
            {
                "name": f"{host}-{k}:{1000 + k}",
                "teacher_model": TEACHER,
                "concurrency": 64,
                "in_flight": 0 if stopped else 64,
                "started_at": beat - timedelta(hours=2),
                "heartbeat_at": beat,
                "paused_since": paused,
                "pause_reason": "teacher unreachable (ConnectError)" if paused else None,
                "stopped_at": stopped,
            }
            for host, k, beat, paused, stopped in rows
        ],
    )


def refresh(engine: Engine) -> None:
    """Move the recent past to now: the active run's last hour, its leases, the workers'
    heartbeats (for a kept database, and before each round, so the rate window keeps its data)."""
    now = utcnow()
    with engine.begin() as conn:
        run_id, params = conn.execute(
            select(Run.id, Run.params).order_by(Run.id.desc()).limit(1)
        ).one()
        then = datetime.fromisoformat(params["bench_now"])
        delta = now - then
        recent = conn.execute(
            select(Job.id, Job.started_at, Job.finished_at).where(
                Job.finished_at >= then - timedelta(hours=1, minutes=1)
            )
        ).all()
        for start in range(0, len(recent), BATCH):
            chunk = recent[start : start + BATCH]
            conn.execute(
                update(Job)
                .where(Job.id == bindparam("b_id"))
                .values(started_at=bindparam("b_start"), finished_at=bindparam("b_end")),
                [{"b_id": i, "b_start": s + delta, "b_end": f + delta} for i, s, f in chunk],
            )
        running = conn.execute(
            select(Job.id, Job.started_at, Job.lease_expires_at).where(
                Job.status == JobStatus.running
            )
        ).all()
        if running:
            conn.execute(
                update(Job)
                .where(Job.id == bindparam("b_id"))
                .values(started_at=bindparam("b_start"), lease_expires_at=bindparam("b_lease")),
                [{"b_id": i, "b_start": s + delta, "b_lease": e + delta} for i, s, e in running],
            )
        conn.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(params={**params, "bench_now": now.isoformat()})
        )
        _put_workers(conn, now)
    if engine.dialect.name == "postgresql":
        # The shift leaves ~70k dead rows a round; autovacuum would clear them only after 20 % of
        # the table, by when the counts read the heap instead of the index (see the docs).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) jobs"))


# ------------------------------------------------------------------------------------ databases


@contextmanager
def database(kind: str, *, keep: Path | None, empty: bool = False) -> Iterator[str]:
    """The URL of a database for `kind`; dropped afterwards unless kept."""
    suffix = "_empty" if empty else ""
    if kind == "sqlite":
        folder = keep or Path(tempfile.mkdtemp(prefix="bench-status-"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"status{suffix}.db"
        yield f"sqlite:///{path}"
        if keep is None:
            for p in folder.glob("status*"):
                p.unlink()
            folder.rmdir()
        return
    import psycopg

    if keep is not None:
        name = re.sub(r"\W", "_", keep.name.lower()) + suffix
    else:
        name = f"bench_status{suffix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN.replace("postgresql://", "postgresql+psycopg://")).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        if keep is None:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build (or reuse and refresh) the database at `url`; facts about it for the report."""
    started = time.perf_counter()
    engine = make_engine(url)
    fresh = True
    try:
        with engine.connect() as conn:
            fresh = int(conn.execute(select(func.count()).select_from(Job)).scalar_one()) == 0
    except Exception:  # no tables yet
        fresh = True
    if fresh:
        upgrade(url)
        build(
            engine,
            jobs=args.jobs,
            samples=args.samples,
            runs=args.runs,
            text_chars=args.text_chars,
            fresh=args.fresh_run,
        )
        print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
    else:
        t0 = time.perf_counter()
        upgrade(url)  # a kept database built before a migration: what the migration costs
        print(f"  kept database; upgrade to head took {time.perf_counter() - t0:.1f} s", flush=True)
        refresh(engine)
    with engine.connect() as conn:
        n_jobs = int(conn.execute(select(func.count()).select_from(Job)).scalar_one())
        runs = list(conn.execute(select(Run.id).order_by(Run.id)).scalars())
    engine.dispose()
    if n_jobs != args.jobs:
        raise SystemExit(f"{url}: {n_jobs} jobs, not {args.jobs} (use another --keep DIR)")
    return {"jobs": n_jobs, "active_run": runs[-1], "finished_run": runs[0]}


# ---------------------------------------------------------------------------------- measuring


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
    env["DISTILL_DATABASE_URL"] = url
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def time_command(argv: list[str], url: str, cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [*DISTILL, *argv], env=_env(url), cwd=cwd, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"distill {' '.join(argv)} failed: {done.stderr.strip()[-2000:]}")
    return elapsed


class StatementClock:
    """Each statement's time on `engine`, by its first line (cursor events)."""

    def __init__(self, engine: Engine) -> None:
        self.times: dict[str, float] = {}
        self.statements: list[tuple[str, Any]] = []
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        elapsed = time.perf_counter() - self._started
        self.times[statement] = self.times.get(statement, 0.0) + elapsed
        if statement not in dict(self.statements):
            self.statements.append((statement, params))


def time_queries(engine: Engine, **kwargs: Any) -> tuple[float, dict[str, float], Any]:
    """collect() once in this process: its wall time and each statement's time."""
    clock = StatementClock(engine)
    with Session(engine) as session:
        started = time.perf_counter()
        report = collect(session, heartbeat_s=20.0, **kwargs)
        elapsed = time.perf_counter() - started
    event.remove(engine, "before_cursor_execute", clock._before)
    event.remove(engine, "after_cursor_execute", clock._after)
    return elapsed, clock.times, (report, clock.statements)


def _queries(engine: Engine, run_id: int | None, into: dict[str, list[float]]) -> float:
    elapsed, times, _ = time_queries(engine, run_id=run_id)
    for statement, t in times.items():
        into.setdefault(statement, []).append(t)
    return elapsed


def explain(engine: Engine, statements: list[tuple[str, Any]]) -> None:
    prefix = "EXPLAIN ANALYZE " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        for statement, params in statements:
            print("\n  " + " ".join(statement.split())[:400])
            rows = conn.exec_driver_sql(prefix + statement, params).all()
            for row in rows:
                print("    " + (row[-1] if isinstance(row[-1], str) else str(row)))


def _label(statement: str) -> str:
    flat = " ".join(statement.split())
    return flat[:90] + ("…" if len(flat) > 90 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--text-chars", type=int, default=1000, help="raw text per generation")
    parser.add_argument(
        "--fresh-run",
        action="store_true",
        help="the last run just enqueued: every job of it queued (--runs 1: all of them)",
    )
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--rounds", type=int, default=5, help="repeats; medians are reported")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the databases; SQLite here")
    parser.add_argument("--explain", action="store_true", help="print each statement's plan")
    parser.add_argument("--json", type=Path, help="write the medians here")
    args = parser.parse_args()

    workdir = tempfile.TemporaryDirectory(prefix="bench-status-cwd-")
    cwd = Path(workdir.name)  # no stray .env or distill.db; removed at exit
    results: dict[str, dict[str, list[float]]] = {}
    statement_times: dict[str, dict[str, list[float]]] = {}
    with _databases(args) as dbs:
        cases: list[tuple[str, str, Callable[[], float]]] = []
        engines = {}
        for kind, (url, empty_url, facts) in dbs.items():
            engines[kind] = engine = make_engine(url)
            active, finished = facts["active_run"], facts["finished_run"]
            for argv in (
                ["status"],
                ["status", "--json"],
                ["status", "--json", "--run", str(active)],
                ["status", "--json", "--run", str(finished)],
            ):
                name = "distill " + " ".join(argv).replace(str(active), "ACTIVE").replace(
                    f"--run {finished}", "--run FINISHED"
                )
                cases.append((kind, name, partial(time_command, argv, url, cwd)))
            empty_case = partial(time_command, ["status", "--json"], empty_url, cwd)
            cases.append((kind, "distill status --json, empty database", empty_case))
            for label, run_id in (
                ("all", None),
                ("--run ACTIVE", active),
                ("--run FINISHED", finished),
            ):
                key = f"{kind} {label}"
                queries = partial(_queries, engine, run_id, statement_times.setdefault(key, {}))
                cases.append((kind, f"queries in-process (collect), {label}", queries))
        for kind, engine in engines.items():  # warm: bytecode, connections, the OS page cache
            time_queries(engine)
            time_command(["status", "--json"], dbs[kind][0], cwd)
        with open("/proc/loadavg") as f:
            load_before = f.read().split()[0]
        for round_ in range(args.rounds):
            for engine in engines.values():  # not timed: the last hour moved to now again
                refresh(engine)
            # Alternate the order, so that neither backend always gets the quieter moment.
            for kind, name, measure in cases if round_ % 2 == 0 else cases[::-1]:
                results.setdefault(f"{kind}: {name}", {}).setdefault("s", []).append(measure())
            print(f"  round {round_ + 1}/{args.rounds} done", flush=True)
        with open("/proc/loadavg") as f:
            load_after = f.read().split()[0]
        if args.explain:
            for kind, engine in engines.items():
                for run_id in (None, dbs[kind][2]["active_run"]):
                    refresh(engine)
                    _, _, (_, statements) = time_queries(engine, run_id=run_id)
                    print(f"\n== {kind} plans, run_id={run_id}")
                    explain(engine, statements)
        refresh(engines[next(iter(engines))])
        report, _ = time_queries(engines[next(iter(engines))])[2]
        for engine in engines.values():
            engine.dispose()

    print(
        f"\n{platform.node()} {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"load average {load_before} before, {load_after} after; {args.jobs:,} jobs, "
        f"{args.rounds} rounds"
    )
    print(f"{'case':72} {'median s':>9} {'min s':>7}")
    medians = {}
    for name, r in results.items():
        medians[name] = statistics.median(r["s"])
        print(f"{name:72} {medians[name]:>9.3f} {min(r['s']):>7.3f}")
    print("\nper statement, median s:")
    for case, times in statement_times.items():
        print(f"  {case}")
        for statement, ts in sorted(times.items(), key=lambda kv: -statistics.median(kv[1])):
            print(f"    {statistics.median(ts):8.4f}  {_label(statement)}")
    print(
        f"\nlast report: jobs {report.jobs}, outcomes {report.outcomes}, "
        f"{report.jobs_per_min:.0f} jobs/min ({report.rate_basis}), stale {report.stale_leases}, "
        f"workers {len(report.workers)}, referring {report.referring_questions}"
    )
    if args.json:
        args.json.write_text(json.dumps(medians, indent=2) + "\n")


@contextmanager
def _databases(args: argparse.Namespace) -> Iterator[dict[str, tuple[str, str, dict[str, Any]]]]:
    """Per backend: the big database's URL, an empty one's, and facts about the big one."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        dbs = {}
        for kind in args.backends:
            url = stack.enter_context(database(kind, keep=args.keep))
            empty = stack.enter_context(database(kind, keep=args.keep, empty=True))
            print(f"{kind}: preparing {args.jobs:,} jobs", flush=True)
            facts = prepare(url, args)
            upgrade(empty)
            dbs[kind] = (url, empty, facts)
        yield dbs


if __name__ == "__main__":
    main()
