"""Shared fixtures: a throw-away Airflow home, real Azurite, the real reference model service.

Airflow reads its configuration when first imported, so the environment is set here, at import
time of the root conftest, before any test module imports Airflow.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="painting-tests-airflow-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
)
for name in list(os.environ):  # a developer's own settings must not leak into the tests
    if name.startswith(("AIRFLOW_VAR_PAINTING_", "AIRFLOW_CONN_PAINTING_", "PAINTING_")):
        del os.environ[name]

from include.painting_simulator.settings import ANOMALY, ERROR, NORMAL  # noqa: E402
from scripts import local_services  # noqa: E402  (needs the environment above)

# The Azure SDK logs every request and response at INFO: keep test output readable.
logging.getLogger("azure").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def logs_dir() -> Path:
    path = _AIRFLOW_HOME / "service-logs"
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
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def azurite(logs_dir: Path) -> Iterator[AzuriteHandle]:
    port = local_services.free_port()
    service = local_services.azurite(_AIRFLOW_HOME / "azurite", port, logs_dir / "azurite.log")
    with service:
        yield AzuriteHandle(service, local_services.azurite_connection_string(port))


@dataclass
class AzuriteHandle:
    service: local_services.ServiceProcess
    connection_string: str

    def upload(self, container: str, blobs: dict[str, bytes]) -> None:
        local_services.upload_blobs(self.connection_string, container, blobs)

    def delete(self, container: str, blob: str) -> None:
        from azure.storage.blob import BlobServiceClient

        client = BlobServiceClient.from_connection_string(self.connection_string)
        client.get_container_client(container).delete_blob(blob)


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


def http_connection(port: int, host: str = "127.0.0.1") -> str:
    """``AIRFLOW_CONN_PAINTING_MODEL_SERVICE`` for a model service on ``host:port``."""
    return json.dumps(local_services.http_connection(port, host))


def wasb_connection(connection_string: str) -> str:
    """``AIRFLOW_CONN_PAINTING_BLOB_STORAGE`` for a storage connection string."""
    return json.dumps(local_services.wasb_connection(connection_string))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@dataclass
class Simulator:
    """One isolated simulator setup: its own container, output dir and position."""

    azurite: AzuriteHandle
    container: str
    output_dir: Path
    monkeypatch: pytest.MonkeyPatch
    runs: list[Any] = field(default_factory=list)

    def upload(self, blobs: dict[str, bytes], prefix: str = "painting-process-equipment/") -> None:
        self.azurite.upload(self.container, {prefix + name: data for name, data in blobs.items()})

    def use_model_service(self, service: local_services.ServiceProcess) -> None:
        self.monkeypatch.setenv(
            "AIRFLOW_CONN_PAINTING_MODEL_SERVICE", http_connection(service.port)
        )

    def set_variable(self, name: str, value: str) -> None:
        self.monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)

    def dag(self) -> Any:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(REPO / "dags" / "painting_simulator.py"))
        assert not bag.import_errors, bag.import_errors
        return bag.get_dag("painting_simulator")

    def run(self, conf: dict[str, Any] | None = None, dag: Any = None) -> Any:
        """Run the DAG once with dag.test(); return the finished DagRun."""
        run = (dag or self.dag()).test(run_conf=conf)
        self.runs.append(run)
        return run

    def ledger(self, kind: str) -> list[dict[str, Any]]:
        """Every line of one row ledger (row records only: failure records have their own)."""
        from include.painting_simulator.settings import LEDGER_FILES

        return read_jsonl(self.output_dir / LEDGER_FILES[kind])

    def failures(self) -> list[dict[str, Any]]:
        """The failure records (a failed run: run, task, cause) in their own ledger."""
        from include.painting_simulator.settings import RUN_FAILURES_LEDGER

        return read_jsonl(self.output_dir / RUN_FAILURES_LEDGER)

    def ledgers(self) -> dict[str, list[dict[str, Any]]]:
        return {kind: self.ledger(kind) for kind in (ANOMALY, NORMAL, ERROR)}

    def keys(self, run_id: str | None = None) -> dict[str, list[tuple[str, int]]]:
        """(blob, row) of every record per ledger, optionally for one run."""
        return {
            kind: [
                (r["source"]["blob"], r["source"]["row"])
                for r in records
                if run_id is None or r["run_id"] == run_id
            ]
            for kind, records in self.ledgers().items()
        }

    def position(self) -> dict[str, Any] | None:
        from airflow.models.variable import Variable

        value = Variable.get("painting_position", default_var=None)
        return json.loads(value) if value else None


def _delete_position() -> None:
    from airflow.models.variable import Variable

    Variable.delete("painting_position")


@pytest.fixture
def simulator(
    airflow_db: Path,
    azurite: AzuriteHandle,
    model_service: local_services.ServiceProcess,
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
    _delete_position()
    azurite.upload(container, {})
    return Simulator(azurite, container, output_dir, monkeypatch)
