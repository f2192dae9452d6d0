"""docker-compose.yml, its NVIDIA override and the Dockerfile, read as data (no Docker engine here):
services, start order, health checks, GPU access, scaling, and that no secret is committed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from distill.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SECRETS = {"POSTGRES_PASSWORD": "pg-secret", "REDIS_PASSWORD": "redis-secret"}
SECRET_KEY = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY|AUTH", re.IGNORECASE)


class Reset:
    """Compose's `!reset` tag: the override removes the base file's value."""

    def __init__(self, value: Any) -> None:
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    pass


def _reset(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    if isinstance(node, yaml.SequenceNode):
        return Reset(loader.construct_sequence(node))
    if isinstance(node, yaml.MappingNode):
        return Reset(loader.construct_mapping(node))
    return Reset(loader.construct_scalar(node))  # type: ignore[arg-type]


ComposeLoader.add_constructor("!reset", _reset)


def load(name: str) -> dict[str, Any]:
    data = yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)
    assert isinstance(data, dict)
    return data


BASE = load("docker-compose.yml")
NVIDIA = load("docker-compose.nvidia.yml")
SERVICES: dict[str, Any] = BASE["services"]

# --- interpolation, as `docker compose config` does it ----------------------------------------

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in ("-", ":-"):
            return arg if (value is None if op == "-" else empty) else str(value)
        if op in ("?", ":?"):
            if value is None if op == "?" else empty:
                raise MissingVariable(f"{name}: {arg}")
            return str(value)
        return value or ""

    return _VAR.sub(replace, text)


def resolve(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, env) for value in node]
    return node


def variables(node: Any) -> set[str]:
    if isinstance(node, str):
        return {m["name"] or m["bare"] for m in _VAR.finditer(node) if not m["escaped"]}
    if isinstance(node, dict):
        return set().union(*(variables(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(variables(v) for v in node)) if node else set()
    return set()


def strings(node: Any) -> list[str]:
    """Every string in the tree, and every list of strings joined as one command line."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in strings(key) + strings(value)]
    if isinstance(node, list):
        joined = [" ".join(node)] if node and all(isinstance(v, str) for v in node) else []
        return joined + [s for value in node for s in strings(value)]
    return []


def duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts, text
    return sum(float(n) * units[u] for n, u in parts)


RESOLVED: dict[str, Any] = resolve(SERVICES, SECRETS)


def env_of(service: str) -> dict[str, Any]:
    environment = SERVICES[service].get("environment", {})
    assert isinstance(environment, dict), f"{service}: use the mapping form for environment"
    return environment


# --- the stack --------------------------------------------------------------------------------


def test_services() -> None:
    assert set(SERVICES) == {"redis", "postgres", "vllm", "migrate", "worker", "flower"}


def test_every_long_running_service_has_a_healthcheck_or_waits_on_one() -> None:
    for name in ("redis", "postgres", "vllm"):
        assert SERVICES[name]["healthcheck"]["test"], name
    for name in ("migrate", "worker", "flower"):
        conditions = {d["condition"] for d in SERVICES[name]["depends_on"].values()}
        assert conditions & {"service_healthy", "service_completed_successfully"}, name


def test_depends_on_names_real_services_with_valid_conditions() -> None:
    valid = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in SERVICES.items():
        for target, spec in service.get("depends_on", {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            assert spec["condition"] in valid
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} has no healthcheck"


def test_redis_requires_a_password_persists_and_stays_private() -> None:
    redis = SERVICES["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    assert command[command.index("--appendonly") + 1] == "yes"
    assert env_of("redis")["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    assert "ports" not in redis
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])


def test_postgres_has_a_volume_a_readiness_check_and_a_required_password() -> None:
    postgres = SERVICES["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert env_of("postgres")["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "ports" not in postgres


def test_vllm_runs_distill_teacher_serve_from_the_teacher_image() -> None:
    vllm = SERVICES["vllm"]
    assert vllm["entrypoint"] == ["distill", "teacher", "serve"]
    assert vllm["build"]["target"] == "teacher"
    assert "rocm/vllm" in RESOLVED["vllm"]["build"]["args"]["VLLM_IMAGE"]


def test_vllm_has_rocm_device_access() -> None:
    vllm = SERVICES["vllm"]
    assert {"/dev/kfd", "/dev/dri"} <= set(vllm["devices"])
    assert "video" in vllm["group_add"]
    assert vllm["ipc"] == "host"
    assert "seccomp=unconfined" in vllm["security_opt"]
    size = re.fullmatch(r"(\d+)g", vllm["shm_size"])
    assert size is not None
    assert int(size[1]) >= 8


def test_vllm_healthcheck_waits_long_enough_for_a_32b_model() -> None:
    check = RESOLVED["vllm"]["healthcheck"]
    assert "http://localhost:8000/health" in " ".join(check["test"])
    assert duration_seconds(check["start_period"]) >= 15 * 60


def test_vllm_caches_models_and_takes_an_optional_hf_token() -> None:
    vllm = SERVICES["vllm"]
    assert any(v.endswith(":/root/.cache/huggingface") for v in vllm["volumes"])
    assert env_of("vllm")["HF_TOKEN"] == "${HF_TOKEN:-}"
    assert RESOLVED["vllm"]["volumes"][0] == "hf-cache:/root/.cache/huggingface"
    assert "hf-cache" in BASE["volumes"]


def test_vllm_takes_every_serve_setting_from_the_environment() -> None:
    """One source of truth: each DISTILL_SERVE_* setting reaches `distill teacher serve`."""
    env = env_of("vllm")
    serve_fields = [name for name in Settings.model_fields if name.startswith("serve_")]
    expected = {f"DISTILL_{name.upper()}" for name in serve_fields} | {"DISTILL_TEACHER_MODEL"}
    assert expected <= set(env)
    assert env["DISTILL_TEACHER_MODEL"] is None  # passed through: the worker reads the same one
    assert env["DISTILL_SERVE_HOST"] == "0.0.0.0"
    assert env["DISTILL_SERVE_PORT"] == "8000"


def test_distill_variables_passed_through_are_real_settings() -> None:
    known = {f"DISTILL_{name.upper()}" for name in Settings.model_fields}
    for name in SERVICES:
        unknown = {k for k in env_of(name) if k.startswith("DISTILL_")} - known
        assert not unknown, f"{name}: {unknown} are not fields of distill.config.Settings"


def test_worker_waits_for_migrations_the_teacher_and_the_broker() -> None:
    worker = SERVICES["worker"]
    assert worker["command"] == ["worker"]
    assert worker["build"]["target"] == "app"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"


def test_worker_scales() -> None:
    worker = SERVICES["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "hostname" not in worker


def test_worker_reaches_postgres_redis_and_vllm_with_the_passwords() -> None:
    env = RESOLVED["worker"]["environment"]
    db = make_url(env["DISTILL_DATABASE_URL"])
    assert (db.drivername, db.host, db.password) == ("postgresql+psycopg", "postgres", "pg-secret")
    assert db.username == SERVICES["postgres"]["environment"]["POSTGRES_USER"]
    assert db.database == SERVICES["postgres"]["environment"]["POSTGRES_DB"]
    broker = urlsplit(env["DISTILL_BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.password) == ("redis", "redis", "redis-secret")
    teacher = env_of("vllm")
    assert env["DISTILL_TEACHER_URL"] == f"http://vllm:{teacher['DISTILL_SERVE_PORT']}/v1"
    assert env["DISTILL_TEACHER_MODEL"] is None  # the same variable as the vllm service's


def test_worker_passes_through_every_other_setting() -> None:
    fixed = {"database_url", "broker_url", "teacher_url"}
    expected = {
        f"DISTILL_{name.upper()}"
        for name in Settings.model_fields
        if not name.startswith("serve_") and name not in fixed
    }
    missing = expected - set(env_of("worker"))
    assert not missing, f"add to x-distill-app environment: {sorted(missing)}"


def test_migrate_is_a_one_shot_db_upgrade() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert RESOLVED["migrate"]["environment"] == RESOLVED["worker"]["environment"]


def test_flower_is_optional_and_local() -> None:
    flower = SERVICES["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert all(p.startswith("127.0.0.1:") for p in flower["ports"])
    for name, service in SERVICES.items():
        if name != "flower":
            assert "profiles" not in service, f"{name} would not start with `docker compose up`"


def test_published_ports_default_to_loopback() -> None:
    for name, service in RESOLVED.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


def test_named_volumes_are_declared() -> None:
    for name, service in RESOLVED.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("/", ".", "~")):
                assert source in BASE["volumes"], f"{name}: volume {source} not declared"


# --- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.nvidia.yml"])
def test_no_secret_literal_is_committed(name: str) -> None:
    data = load(name)
    for service_name, service in data["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key) and value is not None and not isinstance(value, Reset):
                assert re.fullmatch(r"\$\{[A-Z_]+(:?[-?][^}]*)?\}", value), (
                    f"{service_name}.{key} must come from the environment, not {value!r}"
                )
                assert not re.search(r":-[^}]+\}", value), f"{key} has a default secret"
    for text in strings(data):
        assert not re.search(r"password\s*=\s*[^$\s\"'{]", text, re.IGNORECASE), text
        assert not re.search(r"requirepass\s+[^$\s\"]", text), text
        for credentials in re.findall(r"://[^/\s@]*:([^@\s]+)@", text):
            assert credentials.startswith("${"), f"literal credentials in {text!r}"


def test_required_secrets_stop_compose_when_missing() -> None:
    for missing in SECRETS:
        env = {k: v for k, v in SECRETS.items() if k != missing}
        with pytest.raises(MissingVariable, match=missing):
            resolve(SERVICES, env)


def test_every_variable_is_documented_in_env_example() -> None:
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    )
    used = variables(BASE) | variables(NVIDIA)
    for data in (BASE, NVIDIA):
        for service in data["services"].values():
            used |= {
                k
                for k, v in (service.get("environment") or {}).items()
                if v is None and not k.startswith("DISTILL_")
            }
    missing = sorted(used - documented)
    assert not missing, f"add to .env.example: {missing}"


# --- NVIDIA override --------------------------------------------------------------------------


_REMOVED = object()


def merge(base: Any, override: Any) -> Any:
    """Compose's merge rules, as far as these files need them: mappings merge, sequences append,
    scalars replace, `!reset` removes."""
    if isinstance(override, Reset):
        return _REMOVED
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            merged = merge(base.get(key), value)
            if merged is _REMOVED:
                out.pop(key, None)
            else:
                out[key] = merged
        return out
    if isinstance(base, list) and isinstance(override, list):
        return base + override
    return override


def merged_vllm() -> dict[str, Any]:
    """The vllm service after `-f docker-compose.yml -f docker-compose.nvidia.yml`."""
    result = merge(SERVICES["vllm"], NVIDIA["services"]["vllm"])
    assert isinstance(result, dict)
    return result


def test_nvidia_override_swaps_rocm_devices_for_a_gpu_reservation() -> None:
    assert set(NVIDIA["services"]) == {"vllm"}
    vllm = merged_vllm()
    for rocm_only in ("devices", "group_add", "security_opt", "cap_add"):
        assert rocm_only not in vllm
    (reservation,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert reservation["driver"] == "nvidia"
    assert reservation["capabilities"] == ["gpu"]
    assert vllm["entrypoint"] == ["distill", "teacher", "serve"]
    assert vllm["ipc"] == "host"
    args = resolve(vllm["build"]["args"], {})
    assert args["VLLM_IMAGE"].startswith("vllm/vllm-openai")


# --- Dockerfile -------------------------------------------------------------------------------

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def stages() -> dict[str, str]:
    """Stage name -> its text (FROM line to the next FROM)."""
    parts = re.split(r"^(?=FROM )", DOCKERFILE, flags=re.M)
    named = {}
    for part in parts:
        header = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", part, re.IGNORECASE)
        if header and header[2]:
            named[header[2]] = part
    return named


def test_dockerfile_has_the_targets_compose_builds() -> None:
    targets = {s["build"]["target"] for s in SERVICES.values() if "build" in s}
    assert targets == {"app", "teacher"}
    assert targets <= set(stages())


def test_teacher_stage_builds_on_the_vllm_image_without_replacing_it() -> None:
    preamble = DOCKERFILE.split("\nFROM ", 1)[0]
    assert re.search(r"^ARG VLLM_IMAGE=rocm/vllm", preamble, re.M)
    teacher = stages()["teacher"]
    assert teacher.startswith("FROM ${VLLM_IMAGE} AS teacher")
    assert "--constraint" in teacher  # installed packages (torch, vllm) are pinned
    assert 'ENTRYPOINT ["distill", "teacher", "serve"]' in teacher
    assert set(SERVICES["vllm"]["build"]["args"]) == {"VLLM_IMAGE"}


def test_app_stage_runs_distill_as_a_non_root_user() -> None:
    app = stages()["app"]
    assert app.startswith("FROM ${PYTHON_IMAGE} AS app")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE, re.M)
    user = re.findall(r"^USER\s+(\S+)", app, re.M)
    assert user
    assert user[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["distill"]' in app


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".git", "*.db"} <= ignored
