"""On a GPU host: N questions through an already running teacher, via the real pipeline and via a
plain client, and what that means for a 3,000-chain run.

The phases of benchmarks/bench_vllm.py, sized for a real teacher: direct, pipeline, direct (each
on N questions of its own, one sample each, at the run's real token budget), then the direct
client once more with the instruction first (the prefix-cache hit rate of both prompt orders).
Prints the table of phases, generated tokens/s (from the server's /metrics), the pipeline ÷
direct ratio (from the enqueue command and from the first claim), the workers' CPU per job, the
prefix-cache hit rates and the projected time for 3,000 chains at the pipeline's rate.

    python -m benchmarks.gpu_host --url http://127.0.0.1:8000/v1 \\
        --model deepseek-ai/DeepSeek-R1-Distill-Qwen-32B --n 300 \\
        --source cais/mmlu --import-args "--config all --split test"

Needs distill installed (no vLLM): it runs `distill import`, `distill enqueue` and
`--workers` real `distill worker` processes with an embedded broker (or --broker-url) and a
SQLite database in a temporary directory; the teacher's own database and queue are not touched.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_vllm import Config, report, serve_and_run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", required=True, help="the teacher's /v1 URL")
    p.add_argument("--model", required=True, help="its served model name")
    p.add_argument("--n", type=int, default=300, help="questions per phase")
    p.add_argument(
        "--source",
        help="questions: anything `distill import` takes (default: the tiny teacher's "
        "arithmetic families, too easy to be representative)",
    )
    p.add_argument("--import-args", default="", help='e.g. "--config all --split test"')
    p.add_argument("--max-tokens", type=int, default=8192, help="the run's budget per chain")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=64, help="in flight per worker")
    p.add_argument(
        "--client",
        choices=("aiohttp", "httpx"),
        help="the direct phases' client (default aiohttp, the worker's own HTTP stack; "
        "httpx spends more CPU per request, a lower ceiling)",
    )
    p.add_argument("--broker-url", help="a Redis broker (default: an embedded one of its own)")
    p.add_argument("--out", type=Path, help="work directory (default: a temporary one)")
    p.add_argument("--json", type=Path, help="write the result here")
    args = p.parse_args()
    cfg = Config(
        jobs=args.n,
        samples=1,
        concurrency=args.concurrency,
        workers=args.workers,
        max_tokens=args.max_tokens,
        rounds=1,
        naive_jobs=0,  # one at a time would take hours on a 32B reasoning model
        source=args.source,
        import_args=shlex.split(args.import_args),
        url=args.url,
        model=args.model,
        broker_url=args.broker_url,
        client=args.client or "aiohttp",
    )
    print(f"direct client: {cfg.client}", flush=True)
    work = args.out or Path(tempfile.mkdtemp(prefix="gpu-host-"))
    work.mkdir(parents=True, exist_ok=True)
    result = serve_and_run(cfg, work)
    print(report(result))
    s = result["summary"]
    print(
        f"\n3,000 chains at the pipeline's rate ({s['pipeline_jobs_s']} jobs/s, "
        f"{s['pipeline_tok_s']:,.0f} tok/s): {s['projected_3000_chains_h']} h"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
