"""One Settings object, validated at start-up, from the environment (`DISTILL_*`) or `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
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
    # `embedded`: this machine's own Redis-protocol server, started on first use in
    # data_dir/broker (distill.jobs.embedded). Production uses an external Redis.
    broker_url: str = "redis://localhost:6379/0"
    # Where distill keeps its machine-local state: the embedded broker, the demo's lock.
    # Default: the user's data directory (~/.local/share/distill on Linux).
    data_dir: Path | None = None

    teacher_url: str = "http://localhost:8000/v1"
    teacher_model: str = "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
    teacher_api_key: str | None = None

    # DeepSeek-R1 sampling guidance: temperature 0.6, top_p 0.95.
    temperature: float = Field(0.6, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(8192, ge=1)
    request_timeout: float = Field(1800.0, gt=0, description="seconds for one teacher request")
    # Tries of one teacher call within one claim. Between tries tenacity waits a random time
    # of up to min(retry_backoff_max, 2**n) seconds after the n-th try ("full jitter"): with 3
    # tries, up to 2 s then up to 4 s; the cap matters from 7 tries on. Blips only: a teacher
    # that stays down pauses the worker instead (distill.jobs.outage), charging no job.
    request_retries: int = Field(3, ge=1)
    retry_backoff_max: float = Field(60.0, ge=0)
    # Claims of one job (deliveries that reached the teacher) before it is marked failed.
    max_attempts: int = Field(3, ge=1)
    # Teacher requests one worker keeps in flight.
    concurrency: int = Field(64, ge=1)
    # Job ids per broker message. Celery's cost is per message, so fewer, larger messages cost
    # the worker and the broker less per job; a worker holds about four times its concurrency in
    # jobs (workers.main), so a much larger value leaves less for other workers on a short run.
    jobs_per_message: int = Field(16, ge=1, le=1000)
    # Jobs waiting in a broker queue at most. `enqueue` sends this many and leaves the rest in
    # the database; workers send them as the queue drains (their reconciler), so a run of a
    # million jobs keeps ~100k jobs' messages (a few MB) in Redis, not a million's.
    broker_backlog: int = Field(100_000, ge=1)
    # How long a claim is valid without news from its worker. The worker renews the leases of
    # its jobs every heartbeat while their requests run, so a dead or frozen worker's jobs are
    # claimable again about a lease later, whatever the request timeout.
    lease_seconds: float = Field(60.0, gt=0)
    # Lease renewals and the worker's own heartbeat (default: a third of the lease, so a lease
    # survives a missed beat).
    heartbeat_seconds: float | None = Field(None, gt=0)
    # How often each worker's reconciler returns expired leases to the queue and re-sends
    # messages the broker lost (`distill reconcile` runs it once).
    reconcile_seconds: float = Field(15.0, gt=0)
    # Redis visibility timeout: an unacknowledged message comes back after this. Recovery does
    # not wait for it (leases and the reconciler do that); it only bounds when a live job's
    # message is delivered a second time, so it stays longer than a claim's requests can take
    # (default: longest_claim + 5 min).
    visibility_timeout: int | None = Field(None, ge=1)
    # On SIGTERM or Ctrl-C, in-flight requests get this long to finish; the rest are handed
    # back (job queued, message kept). Compose's stop_grace_period must be longer.
    shutdown_grace: float = Field(30.0, ge=0)
    # How long a worker keeps trying to store results the teacher returned (database down,
    # failing over, refusing writes) before it gives the jobs back to be asked again.
    write_patience: float = Field(600.0, gt=0)

    @property
    def data_path(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir.expanduser()
        from platformdirs import user_data_dir

        return Path(user_data_dir("distill", appauthor=False))

    @property
    def lease(self) -> float:
        return self.lease_seconds

    @property
    def heartbeat(self) -> float:
        return self.heartbeat_seconds if self.heartbeat_seconds is not None else self.lease / 3

    @property
    def longest_claim(self) -> float:
        """The longest one claim's requests can take: every try timing out, every wait at its
        largest."""
        waits = sum(min(self.retry_backoff_max, 2.0**n) for n in range(1, self.request_retries))
        return self.request_retries * self.request_timeout + waits

    @property
    def visibility(self) -> int:
        if self.visibility_timeout is not None:
            return self.visibility_timeout
        return int(self.longest_claim) + 300

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """Combinations that cannot work are refused when the settings are read."""
        if self.heartbeat * 2 > self.lease:
            raise ValueError(
                f"DISTILL_HEARTBEAT_SECONDS ({self.heartbeat:g}) must be at most half of "
                f"DISTILL_LEASE_SECONDS ({self.lease:g}): a lease must outlive a missed heartbeat"
            )
        return self

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
