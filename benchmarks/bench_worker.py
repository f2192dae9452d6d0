"""Worker throughput, side by side in one run, against the same teacher server:

  client  a plain async client: N requests, C in flight, nothing else (the ceiling)
  runner  distill's Runner (what `distill worker` runs): batched claims, async requests,
          batched writes
  naive   one thread per job: claim (1 transaction), blocking request, finish (1 transaction)

Reported as completion tokens/s and as a ratio to `client`. The teacher is the tiny vLLM teacher
(`--vllm`, real engine on CPU) or, by default, benchmarks/teacher.py with a fixed latency.

    python -m benchmarks.bench_worker --vllm --jobs 256 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import Engine, insert

from distill.assets import TINY_TEACHER_DIR
from distill.config import Settings
from distill.db import make_engine, session_scope
from distill.importers import question_row
from distill.jobs.enqueue import create_run
from distill.jobs.generation import generation_values
from distill.jobs.lease import ClaimedJob, Failure, Success, claim, finish
from distill.jobs.runner import Runner
from distill.migrate import upgrade
from distill.models import Question
from distill.teacher.client import OpenAITeacher
from schemas.mcq import MCQRecord
from schemas.teacher import TeacherResult


def _settings(url: str, model: str, db: str, concurrency: int, max_tokens: int) -> Settings:
    return Settings(
        database_url=db,
        teacher_url=url,
        teacher_model=model,
        concurrency=concurrency,
        max_tokens=max_tokens,
        request_timeout=300,
    )


def _fresh_db(
    root: Path, name: str, n: int, max_tokens: int, model: str
) -> tuple[str, Engine, list[int]]:
    url = f"sqlite:///{root / name}.db"
    upgrade(url)
    engine = make_engine(url)
    records = [
        MCQRecord(
            question=f"Question number {i}: which option is right?",
            choices=[f"option {letter} of {i}" for letter in "ABCD"],
            answer_index=i % 4,
            subject=("math", "history", "biology")[i % 3],
        )
        for i in range(n)
    ]
    with session_scope(engine) as s:
        s.execute(insert(Question), [question_row(r) for r in records])
    with session_scope(engine) as s:
        plan = create_run(
            s,
            n=n,
            samples=1,
            teacher_model=model,
            params={"temperature": 0.6, "top_p": 0.95},
            max_tokens=max_tokens,
        )
    return url, engine, plan.job_ids


def _tokens(engine: Engine) -> int:
    from sqlalchemy import func, select

    from distill.models import Generation

    with session_scope(engine) as s:
        return int(s.scalar(select(func.sum(Generation.completion_tokens))) or 0)


def bench_client(settings: Settings, jobs: list[ClaimedJob]) -> tuple[float, int]:
    async def main() -> tuple[float, int]:
        async with OpenAITeacher.from_settings(settings) as teacher:
            sem = asyncio.Semaphore(settings.concurrency)

            async def one(job: ClaimedJob) -> TeacherResult:
                async with sem:
                    return await teacher.complete(job.request)

            start = time.perf_counter()
            results = await asyncio.gather(*(one(j) for j in jobs))
            return time.perf_counter() - start, sum(r.completion_tokens or 0 for r in results)

    return asyncio.run(main())


def bench_runner(settings: Settings, engine: Engine, ids: list[int]) -> tuple[float, int]:
    runner = Runner(settings=settings, engine=engine)
    start = time.perf_counter()
    futures = [runner.submit(i) for i in ids]
    for f in futures:
        f.result()
    elapsed = time.perf_counter() - start
    runner.close()
    return elapsed, _tokens(engine)


def bench_naive(settings: Settings, engine: Engine, ids: list[int]) -> tuple[float, int]:
    client = httpx.Client(timeout=settings.request_timeout)

    def one(job_id: int) -> None:
        with session_scope(engine) as s:
            (job,) = claim(s, [job_id], lease_seconds=600, max_attempts=3).claimed
        t0 = time.perf_counter()
        body = job.request.body()
        data = client.post(f"{settings.teacher_url}/chat/completions", json=body).json()
        choice = data["choices"][0]
        result = TeacherResult(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason"),
            completion_tokens=data["usage"]["completion_tokens"],
            latency_s=time.perf_counter() - t0,
            model=data["model"],
        )
        generation = generation_values(job, result)
        results: list[Success | Failure] = [Success(job_id, job.lease_token, generation)]
        with session_scope(engine) as s:
            finish(s, results, max_attempts=3)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(settings.concurrency) as pool:
        list(pool.map(one, ids))
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed, _tokens(engine)


def run(url: str, model: str, *, jobs: int, concurrency: int, max_tokens: int, rounds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    rows: dict[str, list[float]] = {"client": [], "runner": [], "naive": []}
    for r in range(rounds):
        # Same prompts for every mode: the runner's own jobs, rendered once.
        db, engine, ids = _fresh_db(root, f"prompts{r}", jobs, max_tokens, model)
        with session_scope(engine) as s:
            prompts = claim(s, ids, lease_seconds=1, max_attempts=9).claimed
        settings = _settings(url, model, db, concurrency, max_tokens)
        modes: dict[str, Callable[[], tuple[float, int]]] = {
            "client": functools.partial(bench_client, settings, prompts),
        }
        for name, fn in (("runner", bench_runner), ("naive", bench_naive)):
            db_n, engine_n, ids_n = _fresh_db(root, f"{name}{r}", jobs, max_tokens, model)
            s_n = _settings(url, model, db_n, concurrency, max_tokens)
            modes[name] = functools.partial(fn, s_n, engine_n, ids_n)
        order = list(modes) if r % 2 == 0 else list(reversed(modes))  # alternate to cancel drift
        for name in order:
            elapsed, tokens = modes[name]()
            tps = tokens / elapsed
            rows[name].append(tps)
            print(f"round {r} {name:>6}: {tokens} tokens in {elapsed:.1f}s = {tps:,.0f} tok/s")
    best = {k: sorted(v)[len(v) // 2] for k, v in rows.items()}
    print(f"\n{jobs} jobs, {concurrency} in flight, max_tokens {max_tokens}, median of {rounds}:")
    for name, tps in best.items():
        print(f"  {name:>6}: {tps:8,.0f} tok/s  ratio to client {tps / best['client']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--vllm", action="store_true", help="serve the tiny teacher with real vLLM (CPU)"
    )
    parser.add_argument("--url", help="an already running teacher (OpenAI-compatible /v1 URL)")
    parser.add_argument("--model", default="tiny-teacher")
    parser.add_argument("--jobs", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.5, help="fake server latency (s)")
    args = parser.parse_args()
    kwargs = {
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
    }
    if args.url:
        run(args.url, args.model, **kwargs)
    elif args.vllm:
        from distill.teacher.server import start_teacher, stop_teacher

        log = Path(tempfile.mkdtemp()) / "vllm.log"
        server = start_teacher(model_dir=TINY_TEACHER_DIR, served_name=args.model, log_path=log)
        try:
            run(server.base_url, server.model, **kwargs)
        finally:
            stop_teacher(server)
    else:
        from benchmarks.teacher import InstantTeacher

        with InstantTeacher(args.model, latency=args.latency) as fake:
            run(fake.url, args.model, **kwargs)


if __name__ == "__main__":
    main()
