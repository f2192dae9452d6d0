"""One Settings object, validated at start-up, from the environment (`DISTILL_*`) or `.env`."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        # An empty `DISTILL_X=` line in .env (as .env.example ships) means "use the default".
        env_prefix="DISTILL_",
        env_file=".env",
        extra="ignore",
        env_ignore_empty=True,
    )

    database_url: str = "sqlite:///distill.db"
    broker_url: str = "redis://localhost:6379/0"

    teacher_url: str = "http://localhost:8000/v1"
    teacher_model: str = "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
    teacher_api_key: str | None = None

    # DeepSeek-R1 sampling guidance: temperature 0.6, top_p 0.95.
    temperature: float = Field(0.6, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(8192, ge=1)
    request_timeout: float = Field(1800.0, gt=0, description="seconds for one teacher request")
    # Tries of one teacher call within one claim (tenacity, exponential backoff with jitter).
    request_retries: int = Field(3, ge=1)
    retry_backoff_max: float = Field(60.0, ge=0)
    # Claims of one job (deliveries that reached the teacher) before it is marked failed.
    max_attempts: int = Field(3, ge=1)
    # Teacher requests one worker keeps in flight.
    concurrency: int = Field(64, ge=1)
    # How long a claim is valid; a job whose lease expired is claimable again (its worker died).
    # Default: the longest one claim can take (every try timing out, every backoff at its cap).
    lease_seconds: float | None = Field(None, gt=0)
    # Redis visibility timeout: an unacknowledged message is redelivered after this. Default: a
    # little longer than the lease, so a redelivered message finds the dead worker's lease expired.
    visibility_timeout: int | None = Field(None, ge=1)

    @property
    def lease(self) -> float:
        if self.lease_seconds is not None:
            return self.lease_seconds
        return self.request_retries * (self.request_timeout + self.retry_backoff_max) + 60.0

    @property
    def visibility(self) -> int:
        if self.visibility_timeout is not None:
            return self.visibility_timeout
        return int(self.lease) + 300

    seed: int = 0

    # How `distill teacher serve` (and the compose `vllm` service, which runs it) starts vLLM.
    # `teacher_model` is the served name; `serve_model_path` the weights (hub id or local dir),
    # defaulting to the served name.
    serve_model_path: str | None = None
    serve_host: str = "0.0.0.0"
    serve_port: int = 8000
    serve_max_model_len: int = Field(16384, ge=256)
    serve_tensor_parallel_size: int = Field(1, ge=1)
    serve_gpu_memory_utilization: float = Field(0.90, gt=0.0, le=1.0)
    # Off by default: with a reasoning parser vLLM moves the chain to `reasoning_content`,
    # which distill handles, but the raw text then no longer shows what the model emitted.
    serve_reasoning_parser: str | None = None
    serve_prefix_caching: bool = True
    serve_max_num_seqs: int = Field(256, ge=1)
    serve_extra_args: str = ""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
