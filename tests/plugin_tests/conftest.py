"""Fixtures for the dashboard plugin: Airflow's own api-server app, in this process or running.

* ``airflow_app``: the app built by Airflow's real factory (``airflow.api_fastapi.app``), which
  loads this repo's ``plugins/`` like the api-server does, behind a Starlette TestClient.
* ``api_server``: ``airflow api-server`` started on a free port, sharing the test session's
  metadata DB (so it sees the DAG runs that ``dag.test()`` made here), stopped by PID.

Both use the simple auth manager (Airflow's default) with its generated ``admin`` password.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts import local_services
from tests.support import rows
from tests.support.dashboard import JWT_SECRET, XSS_ROWS, AirflowApp, ApiServer


@pytest.fixture(scope="session")
def airflow_app(airflow_db: Path) -> Iterator[AirflowApp]:
    from starlette.testclient import TestClient

    from airflow.api_fastapi.app import create_app, purge_cached_app

    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
        with TestClient(create_app(), base_url="http://127.0.0.1") as client:
            yield AirflowApp(client)
        purge_cached_app()  # the auth manager singleton goes too


@pytest.fixture
def api_server(airflow_db: Path, logs_dir: Path) -> Iterator[ApiServer]:
    """``airflow api-server`` on a free port (one worker), on the tests' AIRFLOW_HOME and DB.

    Started after the test has set its environment (the output dir Variable, connections), so
    it is function-scoped: it sees what the test wrote.
    """
    port = local_services.free_port()
    env = local_services.airflow_env(airflow_db, port)
    env.pop("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", None)
    env["AIRFLOW__API_AUTH__JWT_SECRET"] = JWT_SECRET
    base_url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "airflow", "api-server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    service = local_services.ServiceProcess(
        "Airflow api-server",
        command,
        port,
        local_services.http_ready(f"{base_url}/api/v2/monitor/health"),
        logs_dir / f"api-server-{port}.log",
        env=env,
    )
    service.start(timeout=180)
    try:
        yield ApiServer(service, base_url)
    finally:
        service.stop()


@pytest.fixture
def dag_run_ledgers(simulator: Any) -> tuple[Any, Any]:
    """Ledgers written by a real run of the DAG (dag.test(), Azurite, the model service):
    anomalies of three issue codes, normals and errors. Returns (simulator, the DagRun)."""
    window = [
        rows.NORMAL_1, rows.VOLTAGE_TOO_HIGH, rows.TEMPERATURE_TOO_LOW, rows.THICK_TOO_HIGH,
        rows.BAD_TIMESTAMP, rows.BAD_NUMBER, rows.NORMAL_2, *XSS_ROWS,
    ]  # fmt: skip
    simulator.upload({"line.csv": rows.csv_bytes(*window)})
    simulator.set_variable("painting_batch_size", str(len(window)))
    run = simulator.run()
    assert run.state == "success"
    return simulator, run
