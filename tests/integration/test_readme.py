"""The README's one-machine block, run as written against the tiny teacher, so it cannot rot:
every line of it, in a directory laid out like a fresh clone after the quick start's install."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.jobs.embedded import EmbeddedBroker
from distill.teacher.server import free_port
from tests.support.embedded import short_data_dir
from tests.support.vllm import require_vllm_tier

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- one-machine:"


def one_machine_block() -> str:
    text = (ROOT / "README.md").read_text()
    after = text[text.index(MARK) :]
    match = re.search(r"```bash\n(.*?)```", after, re.DOTALL)
    assert match, "the one-machine block is gone from the README"
    return match.group(1)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with short_data_dir("dist-readme") as directory:
        yield directory


def test_the_readme_one_machine_block_runs_as_written(tmp_path: Path, data_dir: Path) -> None:
    require_vllm_tier()
    block = one_machine_block()
    # The one change: a free port instead of 8000, which something else here may hold.
    assert block.count("127.0.0.1:8000") == 1
    port = free_port()
    block = block.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    block = block.replace(
        "DISTILL_SERVE_HOST=127.0.0.1", f"DISTILL_SERVE_HOST=127.0.0.1 DISTILL_SERVE_PORT={port}"
    )
    # A clone after the quick start: the repository's files and its .venv.
    (tmp_path / "distill").symlink_to(ROOT / "distill")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    (tmp_path / "block.sh").write_text(block)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_")}
    done = subprocess.run(
        ["bash", "-e", "block.sh"],
        start_new_session=True,
        cwd=tmp_path,
        env={**env, "DISTILL_DATA_DIR": str(data_dir), "COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = done.stdout + done.stderr
    logs = "".join(
        f"\n--- {name}\n{(tmp_path / name).read_text(errors='replace')[-3000:]}"
        for name in ("teacher.log", "worker.log")
        if (tmp_path / name).exists()
    )
    assert done.returncode == 0, output + logs
    group = _group_of(tmp_path)
    assert "run 1: enqueued 80 job(s) for 40 question(s) × 2 sample(s)" in output, output
    assert "written to data" in output
    for fmt in ("reasoning", "direct"):
        assert (tmp_path / "data" / fmt / "README.md").is_file()
    assert not EmbeddedBroker(data_dir / "broker").answers()
    # Nothing the block started outlives it: the teacher, its engine, the worker.
    assert group == [], group


def _group_of(cwd: Path) -> list[str]:
    """Processes still running in the block's directory (its children inherit it)."""
    left = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if Path(proc / "cwd").resolve() == cwd.resolve():
                left.append((proc / "cmdline").read_text().replace("\0", " ")[:200])
        except OSError:
            continue
    return left
