"""Fixtures for the connection-check DAGs: run one with dag.test(), and small real HTTP servers.

The tiny servers here are real (a socket, HTTP over TCP) and stand in only for answers the
reference model service cannot be made to give on demand: an unhealthy ``/health``, a
``/predict/`` that breaks the contract, a service that accepts connections but never answers.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scripts import local_services

REPO = Path(__file__).resolve().parents[3]


@dataclass
class CheckRun:
    """A finished run of a check DAG and everything its tasks logged."""

    run: Any
    log: str

    @property
    def state(self) -> str:
        return self.run.state

    def task_states(self) -> dict[str, str | None]:
        return {ti.task_id: ti.state for ti in self.run.get_task_instances()}

    def reschedules(self, task_id: str) -> list[Any]:
        """The TaskReschedule rows of a task: one per poke that did not succeed."""
        from airflow.models.taskreschedule import TaskReschedule
        from airflow.utils.session import create_session

        ti = next(ti for ti in self.run.get_task_instances() if ti.task_id == task_id)
        with create_session() as session:
            rows = session.query(TaskReschedule).filter(TaskReschedule.ti_id == ti.id).all()
            session.expunge_all()
        return sorted(rows, key=lambda row: row.start_date)


class CheckDags:
    """Run a check DAG once with dag.test() and collect what its tasks logged."""

    def __init__(self, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture) -> None:
        self.caplog, self.capfd = caplog, capfd
        self._dags: dict[str, Any] = {}

    def dag(self, dag_id: str) -> Any:
        if dag_id not in self._dags:
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(REPO / "dags" / f"{dag_id}.py"))
            assert not bag.import_errors, bag.import_errors
            self._dags[dag_id] = bag.dags[dag_id]
        return self._dags[dag_id]

    def run(self, dag_id: str, **params: Any) -> CheckRun:
        self.capfd.readouterr()
        self.caplog.clear()
        run = self.dag(dag_id).test(run_conf=params or None)
        out, err = self.capfd.readouterr()
        return CheckRun(run, self.caplog.text + out + err)


@pytest.fixture
def checks(
    airflow_db: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> CheckDags:
    caplog.set_level("INFO")
    return CheckDags(caplog, capfd)


@pytest.fixture
def storage(azurite: Any, monkeypatch: pytest.MonkeyPatch) -> Storage:
    """The storage check pointed at real Azurite, in a fresh container of its own."""
    container = f"check-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_PAINTING_BLOB_STORAGE",
        json.dumps(local_services.wasb_connection(azurite.connection_string)),
    )
    monkeypatch.setenv("AIRFLOW_VAR_PAINTING_CONTAINER", container)
    return Storage(azurite, container, monkeypatch)


@dataclass
class Storage:
    azurite: Any
    container: str
    monkeypatch: pytest.MonkeyPatch

    def upload(self, blobs: dict[str, bytes]) -> None:
        self.azurite.upload(self.container, blobs)

    def use_connection_string(self, connection_string: str) -> None:
        self.monkeypatch.setenv(
            "AIRFLOW_CONN_PAINTING_BLOB_STORAGE",
            json.dumps(local_services.wasb_connection(connection_string)),
        )

    def set_variable(self, name: str, value: str) -> None:
        self.monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)


@pytest.fixture
def use_model_service(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the connection ``painting_model_service`` at a port, or at a whole base URL."""

    def use(port: int | None = None, *, base_url: str | None = None) -> None:
        if base_url is not None:
            value = json.dumps({"conn_type": "http", "host": base_url})
        else:
            value = json.dumps(local_services.http_connection(port))
        monkeypatch.setenv("AIRFLOW_CONN_PAINTING_MODEL_SERVICE", value)

    return use


Answer = tuple[int, str]


class _Handler(BaseHTTPRequestHandler):
    server: _AnsweringServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, body = self.server.answers.get(
            (self.command, self.path), (404, '{"detail": "Not Found"}')
        )
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass


class _AnsweringServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answers: dict[tuple[str, str], Answer]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers = answers


@pytest.fixture
def answering_server() -> Iterator[Any]:
    """Factory: a real HTTP server on 127.0.0.1 answering ``{(method, path): (status, body)}``
    (anything else: 404); returns its port. Shut down at the end of the test."""
    servers: list[_AnsweringServer] = []

    def start(answers: dict[tuple[str, str], Answer]) -> int:
        server = _AnsweringServer(answers)
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
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes the handshake) but never
    answers: a service that hangs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A free port where nothing listens: connections are refused."""
    return local_services.free_port()
