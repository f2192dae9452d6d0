"""Serve the tiny teacher with the real vLLM OpenAI-compatible server (CPU) and measure its outcome mix.

Starts ``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1 (a free port), waits for
``/health``, sends each held-out question ``--samples`` times concurrently (chat completions,
temperature 0.6, top_p 0.95, no ``seed`` — a per-request seed crashes the CPU engine), and reports
how many generations closed the think block, gave a letter after ``</think>``, were correct, and
stopped on ``finish_reason == "length"``. The server is stopped at the end.

Usage::

    .venv/bin/python scripts/check_tiny_teacher.py                  # max_tokens 96
    .venv/bin/python scripts/check_tiny_teacher.py --max-tokens 160 --json /tmp/mix.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from distill.choices import LETTERS  # noqa: E402
from distill.prompts import build_messages  # noqa: E402

DEFAULT_MODEL = REPO_ROOT / "distill" / "assets" / "tiny_teacher"
DEFAULT_MCQ = REPO_ROOT / "distill" / "assets" / "tiny_mcq.jsonl"
SERVED_NAME = "tiny-teacher"
DEFAULT_MAX_TOKENS = 96

BOXED = re.compile(r"\\boxed\{\s*([A-J])\s*\}")
ANSWER_IS = re.compile(r"answer is\s*:?\s*\(?([A-J])\b")


def extract_letter(text: str) -> str | None:
    """The answer letter after ``</think>``: ``\\boxed{X}`` first, else "The answer is X"."""
    if "</think>" not in text:
        return None
    tail = text.split("</think>", 1)[1]
    m = BOXED.search(tail) or ANSWER_IS.search(tail)
    return m.group(1) if m else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(model: Path, port: int, max_model_len: int, dtype: str) -> list[str]:
    return [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model),
        "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--max-model-len", str(max_model_len),
        "--gpu-memory-utilization", "0.3",
        "--enforce-eager",
        "--dtype", dtype,
    ]  # fmt: skip


SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}


def wait_healthy(base: str, proc: subprocess.Popen, timeout: float) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(
                f"vLLM server exited with code {proc.returncode} before becoming healthy"
            )
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return time.time() - t0
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"vLLM server not healthy after {timeout:.0f}s")


async def run_requests(
    base: str, rows: list[dict], samples: int, max_tokens: int, concurrency: int
) -> list[dict]:
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:

        async def one(row: dict, k: int) -> dict:
            body = {
                "model": SERVED_NAME,
                "messages": build_messages(row["question"], row["choices"]),
                "temperature": 0.6,
                "top_p": 0.95,
                "max_tokens": max_tokens,
            }
            async with sem:
                r = await client.post("/v1/chat/completions", json=body)
            r.raise_for_status()
            data = r.json()
            choice = data["choices"][0]
            return {
                "row": row,
                "sample": k,
                "text": choice["message"]["content"] or "",
                "finish_reason": choice["finish_reason"],
                "completion_tokens": data["usage"]["completion_tokens"],
            }

        return await asyncio.gather(*(one(row, k) for row in rows for k in range(samples)))


def summarise(results: list[dict]) -> dict:
    n = len(results)
    c: Counter[str] = Counter()
    by_subject: dict[str, Counter[str]] = {}
    for res in results:
        text = res["text"]
        letter = extract_letter(text)
        gold = LETTERS[res["row"]["answer"]]
        subj = by_subject.setdefault(res["row"]["subject"], Counter())
        flags = {
            "closed_think": "</think>" in text,
            "starts_with_think_tag": text.lstrip().startswith("<think>"),
            "letter": letter is not None,
            "correct": letter == gold,
            "incorrect": letter is not None and letter != gold,
            "length": res["finish_reason"] == "length",
            "stop": res["finish_reason"] == "stop",
        }
        for key, val in flags.items():
            if val:
                c[key] += 1
                subj[key] += 1
        subj["n"] += 1
    lettered = c["letter"]
    return {
        "generations": n,
        **{
            k: c[k]
            for k in (
                "closed_think",
                "letter",
                "correct",
                "incorrect",
                "length",
                "stop",
                "starts_with_think_tag",
            )
        },
        "pct_closed_think": round(100 * c["closed_think"] / n, 1),
        "pct_letter": round(100 * lettered / n, 1),
        "pct_length": round(100 * c["length"] / n, 1),
        "accuracy_of_lettered_pct": round(100 * c["correct"] / lettered, 1) if lettered else None,
        "accuracy_of_all_pct": round(100 * c["correct"] / n, 1),
        "mean_completion_tokens": round(sum(r["completion_tokens"] for r in results) / n, 1),
        "by_subject": {k: dict(v) for k, v in sorted(by_subject.items())},
    }


def acceptance(s: dict) -> list[str]:
    problems = []
    if s["pct_letter"] < 60 or s["pct_closed_think"] < 60:
        problems.append("fewer than 60% closed the think block and gave a letter")
    acc = s["accuracy_of_lettered_pct"] or 0
    if not (25 <= acc <= 85) or s["correct"] == 0 or s["incorrect"] == 0:
        problems.append(f"accuracy {acc}% outside 25-85% (or no correct / no incorrect)")
    if s["pct_length"] < 5:
        problems.append("fewer than 5% hit finish_reason=length")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--mcq", type=Path, default=DEFAULT_MCQ)
    ap.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    ap.add_argument("--samples", type=int, default=4, help="generations per question")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--startup-timeout", type=float, default=600)
    ap.add_argument(
        "--log", type=Path, default=Path("/tmp/tiny-teacher-vllm.log"), help="server stdout/stderr"
    )
    ap.add_argument("--json", type=Path, default=None, help="write the summary (and samples) here")
    ap.add_argument("--show", type=int, default=4, help="print this many sample generations")
    args = ap.parse_args()

    rows = [json.loads(line) for line in args.mcq.read_text().splitlines() if line.strip()]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = server_command(args.model, port, args.max_model_len, args.dtype)
    env = {**os.environ, **SERVER_ENV}
    print("env:", " ".join(f"{k}={v}" for k, v in SERVER_ENV.items()))
    print("server:", " ".join(cmd), flush=True)
    log = args.log.open("w")
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        startup = wait_healthy(base, proc, args.startup_timeout)
        print(f"/health OK after {startup:.1f}s", flush=True)
        t0 = time.time()
        results = asyncio.run(
            run_requests(base, rows, args.samples, args.max_tokens, args.concurrency)
        )
        wall = time.time() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()

    summary = summarise(results)
    summary["max_tokens"] = args.max_tokens
    summary["startup_seconds"] = round(startup, 1)
    summary["generation_wall_seconds"] = round(wall, 1)
    for res in results[: args.show * args.samples : args.samples]:
        print("---", res["row"]["question"], res["row"]["choices"], "gold", LETTERS[res["row"]["answer"]],
              "| finish:", res["finish_reason"])  # fmt: skip
        print(res["text"])
    print("---")
    print(json.dumps(summary, indent=2))
    problems = acceptance(summary)
    print("ACCEPTANCE:", "PASS" if not problems else "FAIL: " + "; ".join(problems))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "results": results}, indent=2))
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
