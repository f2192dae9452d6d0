"""Configuration that cannot drift: the numbers that must agree — lease, heartbeat, visibility
timeout, request timeout × tries + waits, shutdown grace and compose's stop grace — agree in
every place they are read, and settings the threads pool cannot honour are not set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from distill.config import Settings
from workers.app import make_app

ROOT = Path(__file__).resolve().parents[1]


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", value)
    assert match, value
    return float(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_defaults_agree() -> None:
    s = Settings()
    assert s.lease == 60 and s.heartbeat == 20  # a lease outlives a missed heartbeat
    assert s.heartbeat * 2 <= s.lease
    # The waits between tries are min(cap, 2**n): 2 s and 4 s with 3 tries, not 3 × the cap.
    assert s.longest_claim == 3 * 1800 + 2 + 4
    # Only duplicate deliveries wait on the visibility timeout, and a live job's message must not
    # come back while its requests run.
    assert s.visibility >= s.longest_claim


def test_the_worker_runs_with_what_the_settings_say() -> None:
    s = Settings(lease_seconds=90, visibility_timeout=7000)
    conf = make_app(s).conf
    assert conf.task_acks_late is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and list(conf.accept_content) == ["json"]
    assert conf.task_ignore_result is True
    assert conf.broker_transport_options["visibility_timeout"] == 7000
    assert conf.worker_pool == "workers.pool:ThreadPool"
    # What the threads pool cannot honour is not set at all (it looked like protection).
    assert not conf.task_reject_on_worker_lost
    assert not conf.worker_cancel_long_running_tasks_on_connection_loss
    assert conf.task_time_limit is None


def test_compose_lets_the_worker_finish_its_grace() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    stop = _seconds(compose["services"]["worker"]["stop_grace_period"])
    assert stop >= Settings().shutdown_grace + 15, "compose would kill a worker in its grace"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lease_seconds": 10, "heartbeat_seconds": 6}, "at most half of DISTILL_LEASE_SECONDS"),
        ({"lease_seconds": 0}, "greater than 0"),
    ],
)
def test_combinations_that_cannot_work_are_refused(values: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)


def test_an_inconsistent_setting_is_one_line_at_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "distill", "worker"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "DISTILL_LEASE_SECONDS": "10",
            "DISTILL_HEARTBEAT_SECONDS": "9",
        },
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: configuration: DISTILL_HEARTBEAT_SECONDS (9) must be at most half of "
        "DISTILL_LEASE_SECONDS (10): a lease must outlive a missed heartbeat"
    ]
