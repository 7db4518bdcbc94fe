"""The Docker Compose deployment, checked without a Docker engine (there is none here).

``docker-compose.yaml`` is validated against the compose specification with check-jsonschema's
bundled copy of it, and its structure is checked: the official Airflow layout with a Celery worker
pool, health checks, no secret in any committed file, mounts that exist, a Dockerfile on the
pinned Airflow. That the same configuration really runs is ``tests/e2e_tests/test_distributed_e2e``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from include.painting_simulator import settings
from scripts import distributed_stack, local_services
from scripts.run_local import CONTAINER, SAMPLE_BLOB

REPO = local_services.REPO
HOST = distributed_stack.HOST
COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERIGNORE = REPO / ".dockerignore"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
ONE_SHOT_JOBS = {"airflow-init", "azurite-init"}
# airflow-init also runs scripts/create_results_database.py.
INIT_EXTRA_VOLUMES = ["./scripts:/opt/airflow/scripts:ro"]
INIT_RESULTS_DB_STEP = "exec /entrypoint python -m scripts.create_results_database"
RESULTS_DB_ENV = f"AIRFLOW_CONN_{settings.RESULTS_DB_CONN_ID.upper()}"
# Volumes an Airflow worker may mount: the code (read-only) and the task logs, which the
# api-server also reads from each worker's log server. No results, positions or caches.
WORKER_SHARED_VOLUMES = {"airflow-logs"}
# The settings that make Airflow distributed; the native e2e stack sets the same ones.
DISTRIBUTED_SETTINGS = {
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$")
# `${NAME}`, `${NAME:-default}` or `${NAME:?message}`: a value compose takes from .env.
INTERPOLATION = re.compile(r"\$\{[A-Z_][A-Z0-9_]*(:?[-?][^}]*)?\}")
REQUIRED_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*):\?")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # resolves anchors and `<<`


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def check_compose_spec(path: Path) -> subprocess.CompletedProcess[str]:
    command = [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip().strip("'")
    return values


def env_file_value(name: str, given: dict[str, str]) -> str:
    """``name``'s value in .env.example as compose reads it from .env: unquoted and
    double-quoted values have ``${VAR}`` filled in from ``given`` (compose takes the variables
    defined earlier in the file), single-quoted ones are literal."""
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name and not line.lstrip().startswith("#"):
            value = value.strip()
            if value.startswith("'"):
                return value.strip("'")
            return re.sub(
                r"\$\{([A-Z_][A-Z0-9_]*)\}", lambda m: given[m.group(1)], value.strip('"')
            )
    raise AssertionError(f".env.example has no {name}")


def test_compose_file_follows_the_compose_specification() -> None:
    result = check_compose_spec(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_specification_check_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    data = compose()
    intact, broken = tmp_path / "intact.yaml", tmp_path / "broken.yaml"
    intact.write_text(yaml.safe_dump(data))
    data["services"]["postgres"]["healthcheck"]["interval"] = 10  # must be a duration string
    data["services"]["redis"]["healtcheck"] = data["services"]["redis"].pop("healthcheck")
    broken.write_text(yaml.safe_dump(data))

    assert check_compose_spec(intact).returncode == 0  # the copy itself is fine
    result = check_compose_spec(broken)
    assert result.returncode != 0
    assert "interval" in result.stdout, result.stdout
    assert "healtcheck" in result.stdout, result.stdout


def test_every_service_has_a_health_check_or_is_a_one_shot_job() -> None:
    """Long-running services have a real check. The one-shot jobs (init, upload) exit when done;
    others wait for their exit code (`service_completed_successfully`), so their health check
    is disabled explicitly rather than left out."""
    all_services = services()
    awaited = {
        name
        for service in all_services.values()
        for name, condition in (service.get("depends_on") or {}).items()
        if condition.get("condition") == "service_completed_successfully"
    }
    assert awaited <= ONE_SHOT_JOBS
    for name, service in all_services.items():
        check = service.get("healthcheck")
        assert check, f"service {name} has no healthcheck"
        if name in ONE_SHOT_JOBS:
            assert check == {"disable": True}, name
            assert service["restart"] == "no", name
        else:
            assert not check.get("disable"), name
            assert check["test"][0] in ("CMD", "CMD-SHELL"), name
            assert len(check["test"]) > 1, name
            assert service["restart"] == "always", name


def test_airflow_services_follow_the_official_layout() -> None:
    data = compose()
    common, all_services = data["x-airflow-common"], data["services"]
    assert {"postgres", "redis", "airflow-init", *AIRFLOW_COMMANDS} <= set(all_services)
    for name in [*AIRFLOW_COMMANDS, "airflow-init"]:
        service = all_services[name]
        assert service["image"] == common["image"], name
        assert service["build"] == common["build"], name
        extra = INIT_EXTRA_VOLUMES if name == "airflow-init" else []
        assert service["volumes"] == [*common["volumes"], *extra], name
        assert common["environment"].items() <= service["environment"].items(), name
        if name in AIRFLOW_COMMANDS:
            assert service["command"] == AIRFLOW_COMMANDS[name]
            assert service["depends_on"]["airflow-init"] == {
                "condition": "service_completed_successfully"
            }

    env = common["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "true"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:@redis:6379/")
    assert "@postgres/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:")
    init = all_services["airflow-init"]["environment"]
    assert init["_AIRFLOW_DB_MIGRATE"] == "true"
    assert init["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert init["_AIRFLOW_WWW_USER_USERNAME"] == "${AIRFLOW_ADMIN_USERNAME:-admin}"


def test_distributed_settings_are_the_ones_the_native_e2e_stack_runs_with(tmp_path: Path) -> None:
    native = distributed_stack.celery_env(tmp_path, 8080, "postgresql://db", "redis://broker")
    assert set(native) >= DISTRIBUTED_SETTINGS
    assert set(compose()["x-airflow-common"]["environment"]) >= DISTRIBUTED_SETTINGS
    assert native["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_native_workers_have_no_directory_in_common(tmp_path: Path) -> None:
    homes = [distributed_stack.WorkerHome(tmp_path / name) for name in ("worker-1", "worker-2")]
    envs = [home.env() for home in homes]
    assert set(envs[0]) == set(envs[1])
    # Every directory setting of a worker is its own, and under its own root.
    for home, env in zip(homes, envs, strict=True):
        assert all(Path(value).is_relative_to(home.root) for value in env.values()), env
    assert not set(envs[0].values()) & set(envs[1].values())


def test_native_results_connection_uri_is_the_database_airflow_reads() -> None:
    from airflow.models.connection import Connection

    uri = distributed_stack.connection_uri(5432, "db", password="p@ss/w:rd%")
    connection = Connection(conn_id=settings.RESULTS_DB_CONN_ID, uri=uri)
    assert (connection.conn_type, connection.host, connection.port) == ("postgres", HOST, 5432)
    assert (connection.login, connection.password, connection.schema) == (
        "airflow",
        "p@ss/w:rd%",
        "db",
    )


def test_at_least_two_celery_workers_and_no_volume_for_results() -> None:
    """The workers share no directory for results: no service mounts anything at or under
    ``painting_output_dir``, and a worker's only named volume is the task logs (the row cache is
    in the container's AIRFLOW_HOME); the results go to the database."""
    data = compose()
    workers = {
        name: service
        for name, service in data["services"].items()
        if service.get("command") == "celery worker"
    }
    count = sum(int(s.get("deploy", {}).get("replicas", 1)) for s in workers.values())
    assert count >= 2, f"{count} Celery worker(s): {sorted(workers)}"
    env = data["x-airflow-common"]["environment"]
    output_dir = env["AIRFLOW_VAR_PAINTING_OUTPUT_DIR"]
    assert "PAINTING_CACHE_DIR" not in env  # the default: AIRFLOW_HOME/painting_cache, local
    assert "painting-ledgers" not in (data.get("volumes") or {})
    for name, service in data["services"].items():
        for volume in service.get("volumes", []):
            target = Path(volume.split(":")[1])
            assert not target.is_relative_to(output_dir), f"{name} mounts {volume}"
    for name, service in workers.items():
        named = {v.split(":")[0] for v in service["volumes"] if not v.startswith((".", "/"))}
        assert named <= WORKER_SHARED_VOLUMES, f"{name} shares {sorted(named)}"


def test_every_airflow_service_has_the_results_database_from_the_env_file() -> None:
    all_services = services()
    expected = f"${{{RESULTS_DB_ENV}:?set {RESULTS_DB_ENV} in .env}}"
    for name in [*AIRFLOW_COMMANDS, "airflow-init"]:
        assert all_services[name]["environment"][RESULTS_DB_ENV] == expected, name


def test_the_env_files_results_connection_names_what_the_init_job_creates() -> None:
    """.env.example's connection is the postgres service's database ``painting`` of user
    ``painting``, its password from .env; the init job creates exactly what it names."""
    from airflow.models.connection import Connection

    init = services()["airflow-init"]
    assert init["command"][-1].strip().splitlines()[-1] == INIT_RESULTS_DB_STEP
    assert set(INIT_EXTRA_VOLUMES) <= set(init["volumes"])
    example = env_example()
    assert example["PAINTING_RESULTS_DB_PASSWORD"] == ""  # a secret: filled in .env only
    uri = env_file_value(RESULTS_DB_ENV, {"PAINTING_RESULTS_DB_PASSWORD": "s3cret"})
    connection = Connection(conn_id=settings.RESULTS_DB_CONN_ID, uri=uri)
    assert (connection.conn_type, connection.host, connection.port) == (
        "postgres",
        "postgres",
        5432,
    )
    assert (connection.login, connection.password, connection.schema) == (
        "painting",
        "s3cret",
        "painting",
    )
    # Not the metadata DB's database nor its user.
    metadata = compose()["x-airflow-common"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert metadata.endswith("@postgres/airflow")
    assert "://airflow:" in metadata


def init_job_env(admin_url: str, results_uri: str) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": admin_url,
        RESULTS_DB_ENV: results_uri,
        "PYTHONPATH": str(REPO),
    }


def run_init_step(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *INIT_RESULTS_DB_STEP.split()[3:]]  # python -m scripts.…
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def test_the_init_job_creates_the_results_database_and_user_and_a_second_up_does_too(
    tmp_path: Path,
) -> None:
    """The init job's step for real, twice (a second ``docker compose up`` on the same volume),
    on a real PostgreSQL as its superuser ``airflow``, with .env.example's connection (host and
    port those of the test server); then the new user creates the store's tables and writes."""
    from sqlalchemy import create_engine

    from include.painting_simulator.results_db import DatabaseResults, engine_kwargs
    from tests.support.results_db import normal_result, start_postgres

    password = secrets.token_hex(16)
    server = start_postgres(local_services.free_port(), tmp_path / "postgres.log")
    try:
        uri = env_file_value(RESULTS_DB_ENV, {"PAINTING_RESULTS_DB_PASSWORD": password})
        uri = uri.replace("@postgres:5432/", f"@{HOST}:{server.port}/")
        env = init_job_env(server.url, uri)
        first, second = run_init_step(env), run_init_step(env)
        url = f"postgresql+psycopg://painting:{password}@{HOST}:{server.port}/painting"
        engine = create_engine(url, **engine_kwargs("postgresql"))
        try:
            store = DatabaseResults(engine)
            written = store.write_rows(
                "manual__init", [normal_result("a.csv", r) for r in range(3)]
            )
            lines = list(store.lines(settings.RESULTS_TABLE))
            with engine.connect() as connection:
                superuser = connection.exec_driver_sql(
                    "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                ).scalar()
        finally:
            engine.dispose()
    finally:
        server.stop()
    assert first.returncode == 0, first.stderr
    assert "user painting: created" in first.stdout, first.stdout
    assert "database painting: created, owned by painting" in first.stdout, first.stdout
    assert second.returncode == 0, second.stderr
    assert "user painting: already there" in second.stdout, second.stdout
    assert "database painting: already there" in second.stdout, second.stdout
    assert password not in first.stdout + first.stderr + second.stdout + second.stderr
    assert (written.new, len(lines)) == (3, 3)
    assert superuser is False


def test_the_init_job_refuses_a_results_connection_without_a_password() -> None:
    """An .env whose PAINTING_RESULTS_DB_PASSWORD is still empty: the job fails, naming it,
    before touching any server."""
    uri = env_file_value(RESULTS_DB_ENV, {"PAINTING_RESULTS_DB_PASSWORD": ""})
    result = run_init_step(init_job_env("postgresql+psycopg2://airflow:x@127.0.0.1:1/airflow", uri))
    assert result.returncode == 2
    assert "connection 'painting_results_db'" in result.stderr
    assert "no password" in result.stderr
    assert "PAINTING_RESULTS_DB_PASSWORD" in result.stderr


def test_mounted_host_paths_exist_and_named_volumes_are_declared() -> None:
    data = compose()
    declared = set(data.get("volumes") or {})
    host_paths = set()
    for name, service in data["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                host_paths.add(source)
                assert (REPO / source).resolve().is_relative_to(REPO), (name, volume)
                assert (REPO / source).exists(), f"{name} mounts {source}, missing in the repo"
            else:
                assert source in declared, f"{name} uses the undeclared volume {source}"
    # The package is mounted, not baked into the image.
    assert {"./dags", "./plugins", "./include"} <= host_paths


def test_local_services_azurite_and_the_model_service() -> None:
    all_services = services()
    azurite = all_services["azurite"]
    assert azurite["image"].startswith("mcr.microsoft.com/azure-storage/azurite:")
    assert "--blobPort=10000" in azurite["command"]
    upload = all_services["azurite-init"]
    assert upload["entrypoint"][:3] == ["python", "-m", "scripts.azurite_sample"]
    assert upload["depends_on"]["azurite"] == {"condition": "service_healthy"}
    model = " ".join(all_services["model-service"]["entrypoint"])
    assert model == "python -m include.model_service --host 0.0.0.0 --port 8001"
    # The example connections reach them under their service names.
    env = env_example()
    assert "BlobEndpoint=http://azurite:10000/" in env["AIRFLOW_CONN_PAINTING_BLOB_STORAGE"]
    model_conn = yaml.safe_load(env["AIRFLOW_CONN_PAINTING_MODEL_SERVICE"])
    assert (model_conn["host"], model_conn["port"]) == ("model-service", 8001)


def test_azurite_init_job_uploads_the_sample_once(tmp_path: Path) -> None:
    """The job's command (``python -m scripts.azurite_sample``) against a real Azurite."""
    from azure.storage.blob import BlobServiceClient

    port = local_services.free_port()
    azurite = local_services.azurite(tmp_path / "azurite", port, tmp_path / "azurite.log")
    command = [sys.executable, "-m", "scripts.azurite_sample", "--host", "127.0.0.1"]
    with azurite:
        first, second = (
            subprocess.run(
                [*command, "--port", str(port)], capture_output=True, text=True, cwd=REPO
            )
            for _ in range(2)
        )
        client = BlobServiceClient.from_connection_string(
            local_services.azurite_connection_string(port)
        )
        blob = client.get_blob_client(CONTAINER, SAMPLE_BLOB)
        stored = blob.download_blob().readall()
    assert first.returncode == 0, first.stderr
    assert "Uploaded" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "already there" in second.stdout
    assert stored == local_services.SAMPLE_CSV.read_bytes()


def test_secrets_and_connections_come_from_the_git_ignored_env_file() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    example = env_example()
    required = set(REQUIRED_VARIABLE.findall(text))
    assert {"AIRFLOW_CONN_PAINTING_BLOB_STORAGE", "AIRFLOW_CONN_PAINTING_MODEL_SERVICE",
            RESULTS_DB_ENV} <= required  # fmt: skip
    missing = required - set(example)
    assert not missing, f".env.example does not mention {sorted(missing)}"
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()
    for name, value in example.items():
        if SECRET_NAME.search(name):
            assert value == "", f".env.example must leave {name} empty (a secret)"


@pytest.mark.parametrize("path", [COMPOSE, DOCKERFILE, ENV_EXAMPLE], ids=lambda p: p.name)
def test_no_secret_literal_but_the_public_azurite_key(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for key in re.findall(r"AccountKey=([^;\"'\s]+)", text):
        assert key == local_services.AZURITE_KEY, f"a storage account key in {path.name}"
    # Long random-looking tokens (mixed case and digits): keys, passwords, tokens.
    for token in re.findall(r"[A-Za-z0-9+/_-]{24,}={0,2}", text):
        random_looking = all(re.search(c, token) for c in ("[a-z]", "[A-Z]", "[0-9]"))
        if random_looking:
            assert token in local_services.AZURITE_KEY, f"{token!r} in {path.name}"
    # user:password@ in URLs: empty or from .env.
    for password in re.findall(r"://[^:/@\s]*:([^@/\s]*)@", text):
        assert password == "" or INTERPOLATION.fullmatch(password), f"a password in {path.name}"
    if path == COMPOSE:
        for name, service in services().items():
            for variable, value in (service.get("environment") or {}).items():
                if SECRET_NAME.search(variable):
                    assert INTERPOLATION.fullmatch(str(value)), f"{name}: {variable} is literal"


def test_dockerfile_extends_the_pinned_airflow_image() -> None:
    pins = dict(
        line.split("==", 1)
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert bases == [f"apache/airflow:{pins['apache-airflow']}-python3.11"]
    assert "pip install --no-cache-dir -r /tmp/requirements.txt" in DOCKERFILE.read_text()


def dockerignored(name: str) -> bool:
    """Whether ``.dockerignore`` keeps the top-level ``name`` out of the build context (the
    last matching pattern wins, ``!`` re-includes)."""
    ignored = False
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if pattern and not pattern.startswith("#"):
            negate = pattern.startswith("!")
            if fnmatch.fnmatchcase(name, pattern.removeprefix("!").rstrip("/")):
                ignored = not negate
    return ignored


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    for name in (".env", ".env.production", ".venv", "node_modules", ".airflow", ".local", ".git"):
        assert dockerignored(name), f"{name} would be sent to the Docker build"
    copied = re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert copied, "the Dockerfile copies its requirements"
    for source in copied:
        assert not dockerignored(source), f"the Dockerfile copies {source}, which is ignored"
