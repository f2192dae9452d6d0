"""benchmarks/bench_vllm.py at its smallest size against the tier's real vLLM server: every
figure it reports comes from the server's counters and the pipeline's database, not timing
thresholds (those are for docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distill.teacher.server import TeacherServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_reports_real_figures(vllm_server: TeacherServer, tmp_path: Path) -> None:
    result_path = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.bench_vllm", "--quick",
            "--url", vllm_server.base_url, "--model", vllm_server.model,
            "--out", str(tmp_path / "work"), "--json", str(result_path),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    result = json.loads(result_path.read_text())
    phases, summary = result["phases"], result["summary"]

    kinds = [p["kind"] for p in phases]
    assert kinds == [
        "direct", "pipeline", "direct", "pipeline", "direct", "naive", "direct-instruction-first"
    ]  # fmt: skip
    for phase in phases:
        assert phase["tokens"] > 0 and phase["seconds"] > 0, phase
        assert phase["prefix_queries"] > 0 and 0 <= phase["prefix_hit_rate"] <= 1, phase
        if phase["kind"] == "pipeline":
            # /metrics counted exactly the tokens the stored generations report.
            assert phase["failed"] == 0 and phase["db_tokens"] == phase["tokens"], phase
            assert 0 < phase["seconds_from_claim"] <= phase["seconds"], phase
            assert phase["worker_cpu_s"] > 0, phase
        else:
            assert phase["client_tokens"] == phase["tokens"], phase
    assert summary["same_request_shape"] is True
    for key in ("ratio_from_enqueue", "ratio_from_first_claim", "naive_speedup"):
        assert summary[key] > 0, summary
    assert len(summary["ratios_from_enqueue"]) == 2
    assert all(0 <= rate <= 1 for rate in summary["prefix_hit_rate"].values()), summary
    assert summary["worker_cpu_ms_per_job"] > 0
