"""Shared fixtures: a throw-away Airflow home, real Azurite, the real reference model service,
the results database (a SQLite file or a database on a real PostgreSQL server).

Airflow reads its configuration when first imported, so the environment is set first, at
import time of the root conftest (by ``tests.support.airflow_home``), before any test module
imports Airflow. The helpers the fixtures hand out live in ``tests/support/``.
"""

from __future__ import annotations

from tests.support.airflow_home import AIRFLOW_HOME  # first: sets the environment

# isort: split
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts import local_services
from tests.support.azurite import AzuriteHandle, run_azurite
from tests.support.connections import http_connection, wasb_connection
from tests.support.dag_runs import Simulator, delete_position
from tests.support.http_servers import Answer, AnsweringServer
from tests.support.results_db import ENV as RESULTS_DB_ENV
from tests.support.results_db import ResultsDb, start_postgres
from tests.support.smtp_server import SmtpServer, run_smtp_server


def pytest_configure(config: pytest.Config) -> None:
    # The Azure SDK logs every request and response at INFO: keep test output readable.
    logging.getLogger("azure").setLevel(logging.WARNING)
    # aiosmtpd (the tests' SMTP server) logs every SMTP command at INFO.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def logs_dir() -> Path:
    path = AIRFLOW_HOME / "service-logs"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB in the throw-away AIRFLOW_HOME (dag.test() needs one)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def azurite(logs_dir: Path) -> Iterator[AzuriteHandle]:
    port = local_services.free_port()
    with run_azurite(AIRFLOW_HOME / "azurite", port, logs_dir / "azurite.log") as handle:
        yield handle


@pytest.fixture(scope="session")
def model_service(logs_dir: Path) -> Iterator[local_services.ServiceProcess]:
    """The reference model service fitted on the committed sample, for the whole session."""
    port = local_services.free_port()
    with local_services.model_service(port, logs_dir / f"model-service-{port}.log") as service:
        yield service


@pytest.fixture
def start_model_service(logs_dir: Path) -> Iterator[Any]:
    """Factory for a model service with other options (stopped at the end of the test)."""
    started: list[local_services.ServiceProcess] = []

    def start(*extra_args: str, model: bool = True) -> local_services.ServiceProcess:
        port = local_services.free_port()
        service = local_services.model_service(
            port,
            logs_dir / f"model-service-{port}.log",
            data=local_services.SAMPLE_CSV if model else None,
            extra_args=extra_args,
        )
        started.append(service.start())
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="session")
def postgres_server(logs_dir: Path) -> Iterator[Any]:
    """A real PostgreSQL server (Debian's packages) for the session; its user needs a password."""
    server = start_postgres(local_services.free_port(), logs_dir / "postgres-results.log")
    yield server
    server.stop()


@pytest.fixture
def results_db(request: pytest.FixtureRequest, tmp_path: Path) -> ResultsDb | None:
    """The results database of a test: None (JSON lines, the default), or with
    ``@pytest.mark.parametrize("results_db", STORES, indirect=True)`` a SQLite file or a fresh
    database on the session's PostgreSQL server."""
    kind = getattr(request, "param", "json-lines")
    if kind == "json-lines":
        return None
    if kind == "sqlite":
        return ResultsDb.sqlite(tmp_path / "painting_results.db")
    return ResultsDb.postgresql(request.getfixturevalue("postgres_server"))


@pytest.fixture
def simulator(
    airflow_db: Path,
    azurite: AzuriteHandle,
    model_service: local_services.ServiceProcess,
    results_db: ResultsDb | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Simulator:
    """A simulator wired to real Azurite and the real model service, starting at row 0."""
    container = f"sim-{uuid.uuid4().hex[:12]}"
    output_dir = tmp_path / "painting_logs"
    monkeypatch.setenv(
        "AIRFLOW_CONN_PAINTING_BLOB_STORAGE", wasb_connection(azurite.connection_string)
    )
    monkeypatch.setenv("AIRFLOW_CONN_PAINTING_MODEL_SERVICE", http_connection(model_service.port))
    monkeypatch.setenv("AIRFLOW_VAR_PAINTING_CONTAINER", container)
    monkeypatch.setenv("AIRFLOW_VAR_PAINTING_OUTPUT_DIR", str(output_dir))
    # Keep failing calls quick: the retry policy itself is unit-tested.
    monkeypatch.setenv("AIRFLOW_VAR_PAINTING_REQUEST_TIMEOUT_SECONDS", "5")
    if results_db is not None:
        monkeypatch.setenv(RESULTS_DB_ENV, results_db.env_value)
    delete_position()
    azurite.upload(container, {})
    return Simulator(azurite, container, output_dir, monkeypatch, results_db=results_db)


@pytest.fixture
def answering_server() -> Iterator[Any]:
    """Factory: a real HTTP server on 127.0.0.1 answering ``{(method, path): (status, body)}``
    (anything else: 404); returns its port. Shut down at the end of the test."""
    servers: list[AnsweringServer] = []

    def start(answers: dict[tuple[str, str], Answer]) -> int:
        server = AnsweringServer(answers)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server.server_address[1]

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 and a free port, stopped after the test."""
    with run_smtp_server() as server:
        yield server
