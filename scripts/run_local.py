"""The local stack behind ``make run``: ``python -m scripts.run_local``.

Starts, all on 127.0.0.1: Azurite (blob storage, with the sample CSV uploaded once), the
reference model service, a candidate model service beside it (another model version, for the
simulator's shadow mode: the connection ``painting_model_service_candidate`` and the Variable
``painting_candidate_conn_id``; ``PAINTING_SHADOW=0`` leaves it out and deletes the Variable), and
``airflow standalone`` (SQLite, LocalExecutor) with the
``painting_simulator`` DAG unpaused. State lives in the repository: ``.airflow/`` (Airflow home:
metadata DB, admin password, task logs, ledgers) and ``.local/`` (Azurite data, service logs), so a
second run reuses both. Ctrl-C (or SIGTERM) stops every process started here, by PID.

No task runs while the api-server is not there: the DAGs are paused from before Airflow starts
until the api-server answers, and again at Ctrl-C until the running tasks have finished (see
:func:`pause_dags`). ``make airflow ARGS=...`` (:mod:`scripts.airflow_cli`) runs the Airflow CLI
with the environment of :func:`airflow_env`, the one every Airflow process here gets.

Ports can be moved with ``PAINTING_AZURITE_PORT``, ``PAINTING_MODEL_PORT``,
``PAINTING_CANDIDATE_PORT`` and ``PAINTING_AIRFLOW_PORT``; ``PAINTING_INTERVAL_MINUTES``
(schedule) is passed through to Airflow.
``PAINTING_ADMIN_PASSWORD`` sets the password of the UI user ``admin`` (else Airflow generates one
on the first start); either way it is stored in :data:`PASSWORDS_FILE_VAR`'s file, by default
``.airflow/simple_auth_manager_passwords.json.generated``. ``PAINTING_STATE_DIR`` moves
``.airflow/`` and ``.local/`` to another directory (the tests use it; default: the repository).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
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
# The DAGs paused by pause_dags() that the next start unpauses (kept across a crash).
UNPAUSE_FILE = STATE_DIR / "dags-to-unpause.json"

ADMIN = "admin"  # the user of the simple auth manager's default `[core] simple_auth_manager_users`
ADMIN_PASSWORD_VAR = "PAINTING_ADMIN_PASSWORD"
PASSWORDS_FILE_VAR = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"

DAG_ID = "painting_simulator"
CONTAINER = settings.DEFAULT_CONTAINER
SAMPLE_BLOB = settings.DEFAULT_PREFIX + local_services.SAMPLE_CSV.name

AIRFLOW_NAME = "Airflow UI"
CANDIDATE_NAME = "candidate model service"
# The candidate of shadow mode: the reference model fitted the same way, deciding otherwise, so
# the two disagree on known rows (on the sample: 23 rows, e.g. row 114 CUR-LOW -> MCH).
CANDIDATE_ARGS = ("--model-version", "candidate-2", "--mch-threshold", "3.0")
SHADOW_VAR = "PAINTING_SHADOW"
STARTUP_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0  # how long Ctrl-C waits for running tasks before stopping Airflow anyway


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
    package's DAGs and plugins, AIRFLOW_HOME ``.airflow/``, the api-server on 127.0.0.1, and the
    simple auth manager's password file named explicitly (so this script knows where it is).
    The connections are in the metadata DB (:func:`define_connections`), not in the environment.
    """
    env = local_services.airflow_env(AIRFLOW_HOME, api_port, HOST)
    default_file = AIRFLOW_HOME / "simple_auth_manager_passwords.json.generated"
    env[PASSWORDS_FILE_VAR] = env.get(PASSWORDS_FILE_VAR) or str(default_file)
    return env


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


def shadow_mode() -> bool:
    """Whether to start the candidate: ``PAINTING_SHADOW`` unset, ``1`` or ``on`` (default)."""
    raw = os.environ.get(SHADOW_VAR, "").strip().lower()
    if raw in ("", "1", "on", "yes", "true"):
        return True
    if raw in ("0", "off", "no", "false"):
        return False
    raise StartupError(f"{SHADOW_VAR}={raw!r} is neither 1 (start the candidate) nor 0")


def define_connections(
    env: dict[str, str], azurite_port: int, model_port: int, candidate_port: int | None = None
) -> None:
    """(Re)define the connections in the metadata DB so the UI shows them (the candidate's
    too, with a ``candidate_port``)."""
    connection_string = local_services.azurite_connection_string(azurite_port)
    connections = {
        settings.BLOB_CONN_ID: local_services.wasb_connection(connection_string),
        settings.MODEL_CONN_ID: local_services.http_connection(model_port, HOST),
    }
    if candidate_port is not None:
        connections[settings.CANDIDATE_CONN_ID] = local_services.http_connection(
            candidate_port, HOST
        )
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=STATE_DIR) as file:
        json.dump(connections, file)
        file.flush()
        airflow(env, "connections", "import", "--overwrite", file.name)


def set_shadow_variable(env: dict[str, str], on: bool) -> None:
    """Shadow mode on (the Variable names the candidate's connection) or off (deleted)."""
    if on:
        airflow(env, "variables", "set", settings.VAR_CANDIDATE_CONN_ID, settings.CANDIDATE_CONN_ID)
    else:  # not set is fine too: nothing to delete
        airflow(env, "variables", "delete", settings.VAR_CANDIDATE_CONN_ID, check=False)


def read_passwords(path: Path) -> dict[str, str]:
    """The simple auth manager's password file: JSON ``{user: password}``, read at every login."""
    try:
        passwords = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return passwords if isinstance(passwords, dict) else {}


def set_admin_password(path: Path, password: str) -> None:
    """Store ``password`` for ``admin`` (other users kept). Airflow generates a password only for
    a user missing from the file, so it keeps this one; written before Airflow starts."""
    passwords = {**read_passwords(path), ADMIN: password}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        file.write(json.dumps(passwords) + "\n")
    os.replace(tmp, path)


def login_text(path: Path, chosen: bool) -> str:
    where = f"stored in {path}"
    if chosen:
        return f"Log in as {ADMIN} with the password of {ADMIN_PASSWORD_VAR} ({where})"
    password = read_passwords(path).get(ADMIN, "?")
    return (
        f"Log in as {ADMIN}, password {password}\n"
        f"  ({where}; set {ADMIN_PASSWORD_VAR} to choose it)"
    )


# Why pause: `airflow standalone` starts the scheduler, the dag-processor, the api-server and the
# triggerer at once. A DAG that is unpaused in the metadata DB (after a restart: always) gets its
# due run, and the scheduler can queue its first task before the api-server answers: that task's
# first call to the execution API (`PATCH task-instances/{id}/run`) times out and the attempt
# fails. Pausing in the DB before standalone starts (the CLI works offline) and unpausing once
# /api/v2/monitor/health answers keeps the scheduler from queueing anything before; standalone's
# own start and stop are kept (starting its components one by one here would duplicate it, and
# the tests' standalone would no longer be what make run runs). Every unpaused DAG is paused, not
# only painting_simulator: the manual-only check DAGs are unpaused too. At Ctrl-C the same pause
# lets the running tasks finish before standalone stops the api-server (a task cut off there
# fails, and is retried on the next start). The list goes to UNPAUSE_FILE first, so that a start
# after a crash still unpauses them.
def pause_dags(env: dict[str, str]) -> list[str]:
    """Pause every unpaused DAG; return (and store in UNPAUSE_FILE) all DAGs to unpause."""
    out = airflow(
        env, "dags", "pause", "--treat-dag-id-as-regex", "--yes", "--output", "json", ".*"
    )
    # The JSON list of the DAGs it paused, or "No unpaused DAGs were found".
    listed = next((line for line in out.splitlines() if line.startswith("[")), "[]")
    paused = {row["dag_id"] for row in json.loads(listed)}
    with contextlib.suppress(OSError, ValueError):  # none stored, or an unreadable file
        paused |= set(json.loads(UNPAUSE_FILE.read_text()))
    UNPAUSE_FILE.parent.mkdir(parents=True, exist_ok=True)
    UNPAUSE_FILE.write_text(json.dumps(sorted(paused)) + "\n")
    return sorted(paused)


def unpause_dags(env: dict[str, str], dag_ids: list[str]) -> None:
    pattern = "^(" + "|".join(map(re.escape, dag_ids)) + ")$"
    airflow(env, "dags", "unpause", "--treat-dag-id-as-regex", "--yes", pattern)
    UNPAUSE_FILE.unlink(missing_ok=True)


def api_token(base_url: str, password: str) -> str | None:
    """A REST API token for ``admin`` (None if the login fails)."""
    body = json.dumps({"username": ADMIN, "password": password}).encode()
    request = urllib.request.Request(
        f"{base_url}/auth/token", body, {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["access_token"]
    except (OSError, ValueError, KeyError):
        return None


def active_tasks(base_url: str, token: str) -> int:
    """How many task instances, of any DAG, are queued or running."""
    path = "/api/v2/dags/~/dagRuns/~/taskInstances?state=queued&state=running&limit=1"
    request = urllib.request.Request(base_url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["total_entries"]


def let_running_tasks_finish(env: dict[str, str], base_url: str, password_file: Path) -> None:
    """Pause every DAG, then wait up to STOP_TIMEOUT until no task is queued or running."""
    pause_dags(env)
    token = api_token(base_url, read_passwords(password_file).get(ADMIN, ""))
    if token is None:
        print("Could not log in to count the running tasks: not waiting for them", flush=True)
        return
    deadline, quiet, shown = time.monotonic() + STOP_TIMEOUT, 0, False
    # Zero twice in a row: a task the scheduler was queueing as the pause came in shows up.
    while quiet < 2 and time.monotonic() < deadline:
        count = active_tasks(base_url, token)
        quiet = quiet + 1 if count == 0 else 0
        if count and not shown:
            print(
                f"Waiting for {count} running task(s) to finish (at most {STOP_TIMEOUT:.0f} s; "
                "Ctrl-C again stops now) ...",
                flush=True,
            )
            shown = True
        time.sleep(1)
    if quiet < 2:
        print("Tasks still running: they fail now and are retried on the next start", flush=True)


def shadow_text(candidate_port: int | None) -> str:
    if candidate_port is None:
        return f"Shadow mode off ({SHADOW_VAR}=0): no candidate model service"
    return (
        f"Shadow mode on: every row also goes to the candidate at http://{HOST}:{candidate_port} "
        f"(connection {settings.CANDIDATE_CONN_ID}, Variable {settings.VAR_CANDIDATE_CONN_ID}; "
        f"{SHADOW_VAR}=0 turns it off)"
    )


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def run() -> None:
    azurite_port = _port("PAINTING_AZURITE_PORT", 10000)
    model_port = _port("PAINTING_MODEL_PORT", 8001)
    shadow = shadow_mode()
    candidate_port = _port("PAINTING_CANDIDATE_PORT", 8002) if shadow else None
    api_port = airflow_port()
    for name, port in (
        ("Azurite (blob storage)", azurite_port),
        ("reference model service", model_port),
        (CANDIDATE_NAME, candidate_port),
        (AIRFLOW_NAME, api_port),
    ):
        if port is not None:
            local_services.check_port_free(name, port, HOST)

    env = airflow_env(api_port)
    password_file = Path(env[PASSWORDS_FILE_VAR])
    chosen_password = os.environ.get(ADMIN_PASSWORD_VAR) or None
    services: list[ServiceProcess] = []
    standalone = AirflowStandalone(env, api_port, LOG_DIR / "airflow-standalone.log")
    tasks_may_run = False
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
        if candidate_port is not None:
            print(
                f"Starting the {CANDIDATE_NAME} on {HOST}:{candidate_port} "
                f"({' '.join(CANDIDATE_ARGS)}) ...",
                flush=True,
            )
            services.append(
                local_services.model_service(
                    candidate_port,
                    LOG_DIR / "model-service-candidate.log",
                    extra_args=CANDIDATE_ARGS,
                    name=CANDIDATE_NAME,
                )
            )
            services[-1].start()

        print(f"Preparing Airflow in {AIRFLOW_HOME} (db migrate, connections) ...", flush=True)
        AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
        airflow(env, "db", "migrate")
        define_connections(env, azurite_port, model_port, candidate_port)
        set_shadow_variable(env, candidate_port is not None)
        if chosen_password:
            set_admin_password(password_file, chosen_password)
        to_unpause = pause_dags(env)  # until the api-server answers: see pause_dags

        print(f"Starting airflow standalone (log {standalone.log_path}) ...", flush=True)
        standalone.start()
        standalone.wait_healthy(STARTUP_TIMEOUT)
        airflow(env, "dags", "reserialize")
        tasks_may_run = True
        unpause_dags(env, sorted({*to_unpause, DAG_ID}))

        output_dir = os.environ.get("AIRFLOW_VAR_PAINTING_OUTPUT_DIR") or str(
            AIRFLOW_HOME / settings.DEFAULT_OUTPUT_SUBDIR
        )
        print(
            f"\nAirflow UI:  http://{HOST}:{api_port}/\n"
            f"{login_text(password_file, chosen_password is not None)}\n"
            f"DAG {DAG_ID} is unpaused; ledgers (JSON lines) in {output_dir}/\n"
            f"{shadow_text(candidate_port)}\n"
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
        if tasks_may_run and standalone.running:
            print(
                "Pausing the DAGs (the next make run unpauses them) so that stopping cuts off "
                "no running task ...",
                flush=True,
            )
            try:
                let_running_tasks_finish(env, standalone.base_url, password_file)
            except Stop:
                print("Not waiting for the running tasks", flush=True)
            except (StartupError, OSError, ValueError, KeyError) as error:
                print(f"Could not wait for the running tasks: {error}", flush=True)
        # Ignore a second Ctrl-C while shutting down: stopping must run to the end.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("Stopping ...", flush=True)
        stopped_cleanly = standalone.stop()
        if standalone.resent:
            print(
                f"Still running {local_services.COMPONENT_RESEND_SECONDS:.0f} s after standalone's "
                "SIGTERM (a missed SIGTERM, an Airflow 3.3.2 race), sent it again: "
                + "; ".join(standalone.resent),
                flush=True,
            )
        if not stopped_cleanly:
            print(
                "Airflow did not stop on SIGINT in time: its processes were killed; still "
                "running then: " + ("; ".join(standalone.lingering) or "none found"),
                flush=True,
            )
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
