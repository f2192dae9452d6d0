"""Benchmark what migration 0006's trigram index costs the write path on PostgreSQL.

The worker stores each result as a row of `generations`; with 0006, PostgreSQL also adds the
chain's trigrams to a GIN index (`ix_generations_reasoning_trgm`). This inserts the same chains
into two scratch tables of the one text column, with and without that index, in batches as a
worker's flush sends them, alternating rounds, and reports the milliseconds per chain each took
(the client waits on the server, so that is the server's time), the difference, and the sizes
of the index and the text.

Chains are windows of 1-8k characters of this repository's own docs: English prose with code
and numbers, nearer a reasoning chain's variety of trigrams than random words from a short list.

    .venv/bin/python benchmarks/bench_search_index.py --url postgresql+psycopg://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import Engine, text  # noqa: E402

from distill.db import make_engine  # noqa: E402

TABLES = {"bench_chains_plain": False, "bench_chains_trgm": True}


def chains(n: int, seed: int) -> list[str]:
    corpus = "\n".join(
        p.read_text(encoding="utf-8") for p in sorted((REPO_ROOT / "docs").glob("*.md"))
    )
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        size = rng.randint(1000, 8000)
        start = rng.randrange(0, max(1, len(corpus) - size))
        out.append(corpus[start : start + size])
    return out


def setup(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        for table, indexed in TABLES.items():
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
            conn.execute(text(f"CREATE TABLE {table} (id serial PRIMARY KEY, reasoning text)"))
            if indexed:
                conn.execute(
                    text(f"CREATE INDEX {table}_ix ON {table} USING gin (reasoning gin_trgm_ops)")
                )


def insert_round(engine: Engine, table: str, rows: list[str], batch: int) -> float:
    """Seconds per chain, one INSERT and COMMIT per batch."""
    started = time.perf_counter()
    for first in range(0, len(rows), batch):
        with engine.begin() as conn:
            conn.execute(
                text(f"INSERT INTO {table} (reasoning) VALUES (:r)"),
                [{"r": r} for r in rows[first : first + batch]],
            )
    return (time.perf_counter() - started) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", required=True, help="a PostgreSQL database to use (scratch tables)"
    )
    parser.add_argument("--chains", type=int, default=2000, help="per round and table")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16, help="chains per INSERT (a flush)")
    args = parser.parse_args()
    engine = make_engine(args.url)
    setup(engine)
    times: dict[str, list[float]] = {t: [] for t in TABLES}
    try:
        for round_ in range(args.rounds):
            rows = chains(args.chains, seed=round_)
            order = list(TABLES) if round_ % 2 == 0 else list(reversed(TABLES))
            for table in order:
                times[table].append(insert_round(engine, table, rows, args.batch))
        with engine.connect() as conn:
            size = conn.scalar(text("SELECT pg_relation_size('bench_chains_trgm_ix')")) or 0
            chars = conn.scalar(text("SELECT sum(length(reasoning)) FROM bench_chains_trgm")) or 0
            toasted = conn.scalar(text("SELECT pg_table_size('bench_chains_plain')")) or 0
    finally:
        with engine.begin() as conn:
            for table in TABLES:
                conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
    plain = statistics.median(times["bench_chains_plain"]) * 1000
    indexed = statistics.median(times["bench_chains_trgm"]) * 1000
    n = args.chains * args.rounds
    print(f"{n} chains per table ({chars / n:.0f} characters on average), batches of {args.batch}")
    print(f"insert without the trigram index: {plain:.2f} ms per chain (median of rounds)")
    print(f"insert with it:                   {indexed:.2f} ms per chain ({indexed / plain:.2f}x)")
    print(f"the index's own cost:             {indexed - plain:.2f} ms per chain")
    print(
        f"index size {size / 1e6:.1f} MB for {chars / 1e6:.1f} M characters "
        f"(the table without it: {toasted / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
