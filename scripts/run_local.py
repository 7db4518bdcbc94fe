"""The local stack behind ``make run``: ``python -m scripts.run_local``.

Starts, all on 127.0.0.1: Azurite (blob storage, with the sample CSV uploaded once), the
reference model service, and ``airflow standalone`` (SQLite, LocalExecutor) with the
``painting_simulator`` DAG unpaused. State lives in the repository: ``.airflow/`` (Airflow home:
metadata DB, admin password, task logs, ledgers) and ``.local/`` (Azurite data, service logs), so a
second run reuses both. Ctrl-C (or SIGTERM) stops every process started here, by PID.

``make airflow ARGS=...`` (:mod:`scripts.airflow_cli`) runs the Airflow CLI with the environment
of :func:`airflow_env`, the one every Airflow process here gets.

Ports can be moved with ``PAINTING_AZURITE_PORT``, ``PAINTING_MODEL_PORT`` and
``PAINTING_AIRFLOW_PORT``; ``PAINTING_INTERVAL_MINUTES`` (schedule) is passed through to Airflow.
``PAINTING_STATE_DIR`` moves ``.airflow/`` and ``.local/`` to another directory (the tests use it;
default: the repository).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from include.painting_simulator import settings
from scripts import local_services
from scripts.local_services import (
    AirflowStandalone,
    PortInUseError,
    ServiceProcess,
    ServiceStartError,
)

REPO = local_services.REPO
HOST = "127.0.0.1"
STATE_ROOT = Path(os.environ.get("PAINTING_STATE_DIR") or REPO).resolve()
AIRFLOW_HOME = STATE_ROOT / ".airflow"
STATE_DIR = STATE_ROOT / ".local"
LOG_DIR = STATE_DIR / "logs"
AZURITE_DIR = STATE_DIR / "azurite"

DAG_ID = "painting_simulator"
CONTAINER = settings.DEFAULT_CONTAINER
SAMPLE_BLOB = settings.DEFAULT_PREFIX + local_services.SAMPLE_CSV.name

AIRFLOW_NAME = "Airflow UI"
STARTUP_TIMEOUT = 180.0


class Stop(Exception):
    """Raised by the SIGINT/SIGTERM handler: shut everything down and exit 0."""


class StartupError(RuntimeError):
    """A step of the start-up failed; the message says which and why."""


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise StartupError(f"{name}={raw!r} is not a port number") from None


def airflow_port() -> int:
    return _port("PAINTING_AIRFLOW_PORT", 8080)


def airflow_env(api_port: int) -> dict[str, str]:
    """The environment of every Airflow process of ``make run`` and of ``make airflow``: this
    package's DAGs and plugins, AIRFLOW_HOME ``.airflow/``, the api-server on 127.0.0.1.
    The connections are in the metadata DB (:func:`define_connections`), not in the environment.
    """
    return local_services.airflow_env(AIRFLOW_HOME, api_port, HOST)


def airflow(env: dict[str, str], *args: str, check: bool = True) -> str:
    """Run one ``airflow`` CLI command; raise StartupError with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if check and result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise StartupError(f"`airflow {' '.join(args)}` failed ({result.returncode}):\n{tail}")
    return result.stdout


def upload_sample_once(connection_string: str) -> bool:
    """Upload the sample CSV unless it is already stored (a re-run keeps Azurite's data)."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string)
    if service.get_container_client(CONTAINER).get_blob_client(SAMPLE_BLOB).exists():
        return False
    local_services.upload_blobs(
        connection_string, CONTAINER, {SAMPLE_BLOB: local_services.SAMPLE_CSV.read_bytes()}
    )
    return True


def define_connections(env: dict[str, str], azurite_port: int, model_port: int) -> None:
    """(Re)define both connections in the metadata DB so the UI shows them."""
    connection_string = local_services.azurite_connection_string(azurite_port)
    connections = {
        settings.BLOB_CONN_ID: local_services.wasb_connection(connection_string),
        settings.MODEL_CONN_ID: local_services.http_connection(model_port, HOST),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=STATE_DIR) as file:
        json.dump(connections, file)
        file.flush()
        airflow(env, "connections", "import", "--overwrite", file.name)


def admin_password() -> str:
    path = AIRFLOW_HOME / "simple_auth_manager_passwords.json.generated"
    try:
        return json.loads(path.read_text()).get("admin", "?")
    except (OSError, ValueError):
        return f"(see {path})"


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def run() -> None:
    azurite_port = _port("PAINTING_AZURITE_PORT", 10000)
    model_port = _port("PAINTING_MODEL_PORT", 8001)
    api_port = airflow_port()
    for name, port in (
        ("Azurite (blob storage)", azurite_port),
        ("reference model service", model_port),
        (AIRFLOW_NAME, api_port),
    ):
        local_services.check_port_free(name, port, HOST)

    env = airflow_env(api_port)
    services: list[ServiceProcess] = []
    standalone = AirflowStandalone(env, api_port, LOG_DIR / "airflow-standalone.log")
    try:
        print(f"Starting Azurite on {HOST}:{azurite_port} (data in {AZURITE_DIR}) ...", flush=True)
        services.append(local_services.azurite(AZURITE_DIR, azurite_port, LOG_DIR / "azurite.log"))
        services[-1].start()
        connection_string = local_services.azurite_connection_string(azurite_port)
        if upload_sample_once(connection_string):
            print(f"Uploaded the sample CSV to {CONTAINER}/{SAMPLE_BLOB}", flush=True)
        else:
            print(f"Reusing the stored data in {CONTAINER}/{SAMPLE_BLOB}", flush=True)

        print(f"Starting the reference model service on {HOST}:{model_port} ...", flush=True)
        issue_log = LOG_DIR / "model-service-issue_logs.jsonl"
        model_log = LOG_DIR / "model-service.log"
        extra_args = ["--issue-log", str(issue_log)]
        services.append(local_services.model_service(model_port, model_log, extra_args=extra_args))
        services[-1].start()

        print(f"Preparing Airflow in {AIRFLOW_HOME} (db migrate, connections) ...", flush=True)
        AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
        airflow(env, "db", "migrate")
        define_connections(env, azurite_port, model_port)

        print(f"Starting airflow standalone (log {standalone.log_path}) ...", flush=True)
        standalone.start()
        standalone.wait_healthy(STARTUP_TIMEOUT)
        airflow(env, "dags", "reserialize")
        airflow(env, "dags", "unpause", DAG_ID)

        output_dir = os.environ.get("AIRFLOW_VAR_PAINTING_OUTPUT_DIR") or str(
            AIRFLOW_HOME / settings.DEFAULT_OUTPUT_SUBDIR
        )
        print(
            f"\nAirflow UI:  http://{HOST}:{api_port}/\n"
            f"Log in as admin, password {admin_password()}\n"
            f"DAG {DAG_ID} is unpaused; ledgers (JSON lines) in {output_dir}/\n"
            f"Service logs in {LOG_DIR}/, task logs in {AIRFLOW_HOME / 'logs'}/\n"
            'Airflow CLI against this stack: make airflow ARGS="dags list"\n'
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        while standalone.running:
            time.sleep(1)
        raise StartupError(
            f"airflow standalone exited unexpectedly; log {standalone.log_path}:\n"
            f"{standalone.log_tail()}"
        )
    finally:
        # Ignore a second Ctrl-C while shutting down: stopping must run to the end.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("Stopping ...", flush=True)
        if not standalone.stop():
            print("Airflow did not stop on SIGINT in time: its processes were killed", flush=True)
        for service in reversed(services):
            service.stop()
        print("Stopped everything started here.", flush=True)


def main() -> int:
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        run()
    except Stop:
        return 0
    except (PortInUseError, ServiceStartError, StartupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
