"""The distributed configuration of ``docker-compose.yaml``, run natively (no Docker engine).

PostgreSQL (metadata DB and Celery result backend), Redis (Celery broker) and Airflow with the
CeleryExecutor: api-server (with the execution API), scheduler, dag-processor, triggerer and any
number of Celery workers with distinct names, each with local directories of its own
(:class:`WorkerHome`: nothing on disk is shared between workers but the code). Used by the
distributed end-to-end test; every process binds 127.0.0.1 (Airflow's log servers bind all
interfaces: Airflow has no setting for their address), runs in its own session and is stopped
by its PID's process group.

The PostgreSQL and Redis started here are throw-away instances: no durability settings.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from include.painting_simulator import settings
from include.painting_simulator.row_cache import ENV_CACHE_DIR
from scripts import local_services
from scripts.local_services import ServiceProcess, ServiceStartError, free_port

HOST = "127.0.0.1"
DB_USER = "airflow"
DB_NAME = "airflow"
# The environment variable a worker's name is read from by :func:`worker_hostname`.
WORKER_NAME_ENV = "PAINTING_WORKER_NAME"


def worker_hostname() -> str:
    """``[core] hostname_callable`` for Celery workers that share one machine.

    Airflow records ``socket.getfqdn()`` as a task instance's hostname, the same for every worker
    of one host; in docker-compose each worker has its own container hostname. Natively each
    worker's environment names it, so the task instances show which worker ran them.
    """
    return os.environ[WORKER_NAME_ENV]


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise ServiceStartError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): "
            "run `make install` (Debian package postgresql)"
        )
    return candidates[-1].parent


class Postgres(ServiceProcess):
    """A throw-away PostgreSQL cluster on ``HOST:port`` with a user ``airflow``: trusted, or
    with ``password`` (then TCP clients must give it: scram-sha-256).

    PostgreSQL refuses to run as root; as root, the cluster belongs to the ``postgres`` system
    user (created by Debian's package) and lives in its own directory under the system temp dir
    (a pytest ``tmp_path`` is not readable by other users). The directory is removed on stop.
    """

    def __init__(self, port: int, log_path: Path, password: str | None = None) -> None:
        self.password = password
        self.bin = postgres_bin_dir()
        self.run_as = _unprivileged_user() if os.geteuid() == 0 else None
        self.base = Path(tempfile.mkdtemp(prefix="painting-postgres-"))
        self.data = self.base / "data"
        command = [
            *self._as_user(),
            str(self.bin / "postgres"),
            "-D", str(self.data), "-p", str(port), "-k", str(self.base),
            "-c", f"listen_addresses={HOST}",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        super().__init__("PostgreSQL", command, port, self._accepting, log_path, HOST)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``airflow`` database (psycopg2 driver)."""
        secret = f":{self.password}" if self.password else ""
        return f"postgresql+psycopg2://{DB_USER}{secret}@{HOST}:{self.port}/{DB_NAME}"

    def connection_uri(self, database: str) -> str:
        """The Airflow connection URI of ``database`` on this server (:func:`connection_uri`)."""
        return connection_uri(self.port, database, self.password)

    def create_database(self, name: str) -> None:
        """A new, empty database ``name`` owned by the ``airflow`` user."""
        if self._run_quiet(self.bin / "createdb", name):
            raise ServiceStartError(f"createdb {name} failed on {HOST}:{self.port}")

    def _as_user(self) -> list[str]:
        if self.run_as is None:
            return []
        return ["setpriv", f"--reuid={self.run_as}", f"--regid={self.run_as}", "--init-groups"]

    def _accepting(self) -> bool:
        return self._run_quiet(self.bin / "pg_isready", "-q") == 0

    def _run_quiet(self, program: Path, *args: str) -> int:
        command = [str(program), "-h", HOST, "-p", str(self.port), "-U", DB_USER, *args]
        env = {**os.environ, "PGPASSWORD": self.password} if self.password else None
        return subprocess.run(command, capture_output=True, check=False, env=env).returncode

    def start(self, timeout: float = 60.0) -> Postgres:
        if self.run_as is not None:
            shutil.chown(self.base, user=self.run_as)
        initdb = [
            *self._as_user(), str(self.bin / "initdb"), "-D", str(self.data),
            "-U", DB_USER, "--auth=trust", "-E", "UTF8", "--no-sync",
        ]  # fmt: skip
        if self.password:
            password_file = self.base / "password"
            password_file.write_text(self.password)
            if self.run_as is not None:
                shutil.chown(password_file, user=self.run_as)
            initdb += ["--auth-host=scram-sha-256", f"--pwfile={password_file}"]
        result = subprocess.run(initdb, capture_output=True, text=True, check=False)
        if result.returncode:
            raise ServiceStartError(f"initdb failed ({result.returncode}):\n{result.stderr}")
        super().start(timeout)
        try:
            self.create_database(DB_NAME)
        except ServiceStartError:
            self.stop()
            raise
        return self

    def stop(self, grace: float = 15.0, sig: int = signal.SIGINT) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, not waited for); remove the data."""
        try:
            super().stop(grace, sig)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def connection_uri(port: int, database: str, password: str | None = None) -> str:
    """The Airflow connection URI (type ``postgres``) of ``database`` on ``HOST:port`` as user
    ``airflow``, with the password when there is one: a secret, never to be printed."""
    secret = f":{quote(password, safe='')}" if password else ""
    return f"postgres://{DB_USER}{secret}@{HOST}:{port}/{quote(database, safe='')}"


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name).pw_name
    raise ServiceStartError("running as root and neither user postgres nor nobody exists")


def redis(port: int, workdir: Path, log_path: Path) -> ServiceProcess:
    """A Redis server without persistence (``redis-server`` from Debian's package)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceStartError("redis-server is missing: run `make install` (redis-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
        "--dir", str(workdir),
    ]  # fmt: skip
    return ServiceProcess("Redis", command, port, local_services.tcp_ready(HOST, port), log_path)


def celery_env(home: Path, api_port: int, database_url: str, broker_url: str) -> dict[str, str]:
    """The environment of every Airflow process of the stack (docker-compose's
    ``x-airflow-common`` environment): CeleryExecutor, PostgreSQL, Redis, one JWT secret and one
    API secret key shared by all (the api-server checks the tokens the scheduler signs for the
    workers, and the workers' log servers check the api-server's requests)."""
    env = local_services.airflow_env(home, api_port, HOST)
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database_url}",
            # One Fernet key for all, as in compose (every process also writes an airflow.cfg of
            # its own into its AIRFLOW_HOME, each with a different generated key otherwise).
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": HOST,
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
    )
    if importlib.util.find_spec("asyncpg") is None:
        # Airflow derives an asyncpg URL for its async engine from the metadata DB URL; the
        # official image ships asyncpg, this environment may not. Without the driver the engine
        # cannot be created at all, so leave it unset: it serves only the dag-run "wait"
        # endpoint and multi-team lookups, neither used here.
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = ""
    return env


def airflow_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def api_server(env: dict[str, str], log_path: Path) -> ServiceProcess:
    port = int(env["AIRFLOW__API__PORT"])
    url = f"http://{HOST}:{port}/api/v2/monitor/health"
    command = airflow_command("api-server", "--host", HOST, "--port", str(port))
    return ServiceProcess(
        "Airflow api-server", command, port, local_services.http_ready(url), log_path, HOST, env
    )


def scheduler(env: dict[str, str], log_path: Path) -> ServiceProcess:
    """The scheduler, ready when its health-check server answers (as in docker-compose)."""
    port = int(env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"])
    ready = local_services.http_ready(f"http://{HOST}:{port}/health")
    return ServiceProcess(
        "Airflow scheduler", airflow_command("scheduler"), port, ready, log_path, HOST, env
    )


def background_component(name: str, env: dict[str, str], log_path: Path) -> ServiceProcess:
    """A component without a port of its own (``dag-processor``, ``triggerer``): started at
    once; its health shows in the api-server's ``/api/v2/monitor/health``."""
    return ServiceProcess(
        f"Airflow {name}", airflow_command(name), 0, lambda: True, log_path, HOST, env
    )


@dataclass(frozen=True)
class WorkerHome:
    """The local directories of one Celery worker, all under ``root``: its ``AIRFLOW_HOME`` (its
    ``airflow.cfg`` and PID file), task logs (``[logging] base_log_folder``), the row cache
    (``PAINTING_CACHE_DIR``) and ``painting_output_dir`` (the Variable, as
    ``AIRFLOW_VAR_PAINTING_OUTPUT_DIR``: the JSON-lines store, and the failure records' fallback
    when the results database is down). What workers still share is the code only: the
    repository's ``dags/``, ``plugins/`` and ``include/``, and the Python environment."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def cache_dir(self) -> Path:
        return self.root / "painting_cache"

    @property
    def output_dir(self) -> Path:
        return self.root / "painting_logs"

    def env(self) -> dict[str, str]:
        self.root.mkdir(parents=True, exist_ok=True)
        return {
            "AIRFLOW_HOME": str(self.root),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs),
            ENV_CACHE_DIR: str(self.cache_dir),
            f"AIRFLOW_VAR_{settings.VAR_OUTPUT_DIR.upper()}": str(self.output_dir),
        }


def celery_worker(
    name: str, env: dict[str, str], log_path: Path, home: WorkerHome, concurrency: int = 2
) -> ServiceProcess:
    """``airflow celery worker`` named ``name`` (Celery node ``celery@name``), with its own log
    server port, PID file and local directories (``home``); task instances it runs record
    ``name`` as their hostname."""
    log_port = free_port()
    worker_env = {
        **env,
        **home.env(),
        WORKER_NAME_ENV: name,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.{worker_hostname.__name__}",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
    }
    command = airflow_command(
        "celery", "worker", "--celery-hostname", name, "--concurrency", str(concurrency),
        "--pid", str(home.root / "celery-worker.pid"),
    )  # fmt: skip

    def ready() -> bool:  # Celery logs "celery@<name> ready." once it consumes from the broker
        return f"celery@{name} ready" in service.log_tail(200)

    service = ServiceProcess(
        f"Celery worker {name}", command, log_port, ready, log_path, HOST, worker_env
    )
    return service


def stop_all(*groups: Iterable[ServiceProcess]) -> None:
    """Stop group after group, the services of a group side by side (each may take its grace
    period); every one is tried even if stopping another raised."""
    errors = []

    def stop(service: ServiceProcess) -> None:
        try:
            service.stop()
        except Exception as error:  # the others must still be stopped
            errors.append(f"{service.name}: {error!r}")

    for group in groups:
        services = list(group)
        if services:
            with ThreadPoolExecutor(len(services)) as pool:
                list(pool.map(stop, services))
    if errors:
        raise RuntimeError("could not stop: " + "; ".join(errors))
