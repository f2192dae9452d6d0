"""Fixtures of the integration tier (`-m vllm`): one real vLLM server for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from distill.teacher.server import TeacherServer, start_teacher, stop_teacher
from tests.support.vllm import TINY_TEACHER_DIR, TINY_TEACHER_NAME, require_vllm_tier


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeacherServer]:
    """The tiny teacher served by `distill teacher serve` on CPU, shared by the session.

    Gives `.base_url` (`http://127.0.0.1:PORT/v1`, for DISTILL_TEACHER_URL), `.model`
    (`tiny-teacher`, for DISTILL_TEACHER_MODEL) and `.log_path`. Skips when vLLM or the model is
    missing, unless DISTILL_REQUIRE_VLLM is set, which turns the skip into a failure.
    """
    require_vllm_tier()
    log_path = tmp_path_factory.mktemp("vllm") / "vllm.log"
    server = start_teacher(
        model_dir=TINY_TEACHER_DIR, served_name=TINY_TEACHER_NAME, log_path=log_path
    )
    try:
        yield server
    finally:
        stop_teacher(server)
