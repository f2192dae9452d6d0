"""Benchmark `distill export`: wall time and peak memory for N generations (default 100,000).

Builds a SQLite database of realistic size (bulk inserts: N/K questions x K samples, R1-like chains
of 1-8k characters, ~65 % correct; 1M generations: ~10 GB, ~4 min), then runs each export in a
fresh child process and reports its wall time and peak RSS (getrusage in the child, so the
database build does not count); with --rounds N, each figure is the median of N runs.

    .venv/bin/python benchmarks/bench_export.py                       # 100k, both formats
    .venv/bin/python benchmarks/bench_export.py --generations 20000 --to jsonl parquet
    .venv/bin/python benchmarks/bench_export.py --generations 1000000 --db /tmp/g1m.db
        # --db keeps the database for the next run (which reuses it); delete it when done
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import cast

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: benchmarks/ is not a package on the path
    sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import func, insert, select  # noqa: E402

from benchmarks.synthetic import WORDS, insert_run, question_row  # noqa: E402
from distill.choices import LETTERS  # noqa: E402
from distill.db import make_engine  # noqa: E402
from distill.migrate import upgrade  # noqa: E402
from distill.models import Generation, Job, JobStatus, Outcome, Question  # noqa: E402
from distill.prompts import PROMPT_VERSION  # noqa: E402

BATCH = 5000


def _chain(rng: random.Random) -> str:
    n_words = rng.randint(150, 1300)  # ~1-8k characters
    words = rng.choices(WORDS, k=n_words)
    lines = [" ".join(words[i : i + 15]) + "." for i in range(0, n_words, 15)]
    return "\n".join(lines)


def build_db(path: Path, *, generations: int, samples: int, seed: int = 0) -> None:
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    rng = random.Random(seed)
    n_questions = generations // samples
    with engine.begin() as conn:
        run_id = insert_run(conn, samples=samples, questions=n_questions, seed=seed)
    for start in range(0, n_questions, BATCH):
        questions, jobs, gens = [], [], []
        for qi in range(start, min(start + BATCH, n_questions)):
            question = question_row(qi, rng)
            questions.append(question)
            for k in range(samples):
                job_id = qi * samples + k + 1
                order = rng.sample(range(4), 4)
                gold = LETTERS[order.index(question["answer_index"])]
                outcome = rng.choices(
                    [Outcome.correct, Outcome.incorrect, Outcome.truncated, Outcome.unparseable],
                    weights=[65, 20, 10, 5],
                )[0]
                chain = _chain(rng)
                letter = {
                    Outcome.correct: gold,
                    Outcome.incorrect: next(x for x in "ABCD" if x != gold),
                }.get(outcome)
                answer = None if outcome is Outcome.truncated else f"\\boxed{{{letter or '?'}}}"
                jobs.append(
                    {
                        "id": job_id,
                        "run_id": run_id,
                        "question_id": qi + 1,
                        "teacher_model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
                        "prompt_version": PROMPT_VERSION,
                        "sample_index": k,
                        "max_tokens": 8192,
                        "choice_order": order,
                        "status": JobStatus.done,
                    }
                )
                gens.append(
                    {
                        "job_id": job_id,
                        "teacher_model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
                        "request": {},
                        "raw_text": chain + ("</think>" + answer if answer else ""),
                        "response_shape": "open_tag_omitted" if answer else "no_marker",
                        "reasoning": chain,
                        "answer_text": answer,
                        "predicted_letter": letter,
                        "finish_reason": "length" if outcome is Outcome.truncated else "stop",
                        "outcome": outcome,
                        "prompt_tokens": 120,
                        "completion_tokens": len(chain) // 4 + 10,
                        "latency_s": 1.0,
                    }
                )
        with engine.begin() as conn:
            conn.execute(insert(Question), questions)
            conn.execute(insert(Job), jobs)
            conn.execute(insert(Generation), gens)
    engine.dispose()


_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from distill.db import make_engine
from distill.export import export_dataset, ExportOptions
engine = make_engine(sys.argv[1])
options = ExportOptions.model_validate_json(sys.argv[2])
t1 = time.perf_counter()
manifest = export_dataset(options=options, engine=engine)
t2 = time.perf_counter()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "export_s": t2 - t1, "total_s": t2 - t0, "cpu_s": usage.ru_utime + usage.ru_stime,
    "peak_rss_mb": usage.ru_maxrss / 1024,
    "records": {k: v.records for k, v in manifest.outputs.items()},
}))
"""


def measure(db: Path, out: Path, *, fmt: str, to: str) -> dict[str, object]:
    options = {"format": fmt, "out": str(out), "to": to, "overwrite": True}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, f"sqlite:///{db}", json.dumps(options)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def generations_in(db: Path) -> int:
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        n = int(conn.execute(select(func.count()).select_from(Generation)).scalar_one())
    engine.dispose()
    return n


def _load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--format", default="both", choices=["reasoning", "direct", "both"])
    parser.add_argument("--to", nargs="+", default=["disk"], choices=["disk", "jsonl", "parquet"])
    parser.add_argument("--rounds", type=int, default=1, help="Runs per figure (median shown).")
    parser.add_argument(
        "--db", type=Path, help="Reuse this SQLite file, or build it there and keep it."
    )
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLAlchemy {version('sqlalchemy')}, "
        f"datasets {version('datasets')}, pyarrow {version('pyarrow')}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "bench.db"
        if not db.exists():
            started = time.perf_counter()
            build_db(db, generations=args.generations, samples=args.samples)
            print(
                f"built {db} ({db.stat().st_size / 1e9:.1f} GB, {args.generations} generations) "
                f"in {time.perf_counter() - started:.0f} s"
            )
        else:
            found = generations_in(db)
            print(f"reusing {db} ({db.stat().st_size / 1e9:.1f} GB, {found} generations)")
            if found != args.generations:
                raise SystemExit(f"{db} holds {found} generations, not {args.generations}")
        for to in args.to:
            runs = []
            for i in range(args.rounds):
                load = _load()
                r = measure(db, Path(tmp) / f"out-{to}", fmt=args.format, to=to)
                runs.append(r)
                print(
                    f"  round {i + 1}: {r['export_s']:.1f} s export "
                    f"({r['total_s']:.1f} s with imports, {r['cpu_s']:.1f} s CPU), "
                    f"peak RSS {r['peak_rss_mb']:.0f} MB (load average {load})"
                )

            def median(key: str, runs: list[dict[str, object]] = runs) -> float:
                return statistics.median(cast(float, r[key]) for r in runs)

            print(
                f"export --format {args.format} --to {to}, median of {len(runs)}: "
                f"{median('export_s'):.1f} s export ({median('total_s'):.1f} s with imports, "
                f"{median('cpu_s'):.1f} s CPU), peak RSS {median('peak_rss_mb'):.0f} MB, "
                f"records {runs[0]['records']}"
            )


if __name__ == "__main__":
    main()
