"""Distributed end to end: the configuration of ``docker-compose.yaml``, run natively.

There is no Docker engine here, so the same pieces run as processes, all started by this test on
free ports of 127.0.0.1 and stopped by PID at the end (also on failure): PostgreSQL (metadata DB
and Celery result backend) and Redis (Celery broker) from Debian's packages; Airflow with the
CeleryExecutor — api-server with the execution API, scheduler, dag-processor, triggerer and two
Celery workers named ``worker-1`` and ``worker-2``; real Azurite with the sample CSV and the
reference model service (session fixtures). The DAG is driven through the REST API v2 with a
token, as a user would: it is registered paused, several runs are triggered, then it is unpaused.

Differences from the compose file, none of which touches distributed execution: the simple auth
manager instead of FAB (not installed here), and the workers share one host, so each records its
name as the task instances' hostname through ``[core] hostname_callable``
(:func:`scripts.distributed_stack.worker_hostname`); in compose every worker container has a
hostname of its own.
"""

from __future__ import annotations

import csv
import itertools
import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from include.painting_simulator.row_mapping import to_request_body
from include.painting_simulator.settings import LEDGER_FILES
from scripts import distributed_stack as stack_processes
from scripts import local_services, run_local
from scripts.local_services import ServiceProcess, free_port
from tests.support.airflow_api import DAG_ID, AirflowApi

pytestmark = pytest.mark.e2e

HOST = stack_processes.HOST
WORKERS = ("worker-1", "worker-2")
TRIGGERED_RUNS = 4
BATCH_SIZE = 10
BLOB = "painting-process-equipment/painting_sample.csv"
COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")


class CeleryStack(AirflowApi):
    """The running stack: its processes, and its api-server's REST API."""

    def __init__(self, home: Path, base_url: str, services: list[ServiceProcess]) -> None:
        self.home, self.base_url, self.services = home, base_url, services

    @property
    def running(self) -> bool:
        return all(s.process is not None and s.process.poll() is None for s in self.services)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the log of every process that exited, else of every process."""
        exited = [s for s in self.services if s.process is None or s.process.poll() is not None]
        return "\n".join(
            f"--- {s.name} ({s.log_path}):\n{s.log_tail(lines)}" for s in exited or self.services
        )

    def healthy(self) -> bool:
        health = self.try_request("GET", "/api/v2/monitor/health") or {}
        return all(health.get(c, {}).get("status") == "healthy" for c in COMPONENTS)

    def trigger(self) -> str:
        answer = self.request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None})
        return answer["dag_run_id"]

    def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
        return self.request("GET", path)["task_instances"]


@pytest.fixture
def celery_stack(
    tmp_path: Path, azurite: Any, model_service: ServiceProcess
) -> Iterator[tuple[CeleryStack, Path]]:
    home, output_dir, logs = tmp_path / "airflow", tmp_path / "painting_logs", tmp_path / "logs"
    home.mkdir()
    container = f"celery-{uuid.uuid4().hex[:12]}"
    azurite.upload(container, {BLOB: local_services.SAMPLE_CSV.read_bytes()})

    postgres = stack_processes.Postgres(free_port(), logs / "postgres.log")
    redis = stack_processes.redis(free_port(), tmp_path / "redis", logs / "redis.log")
    components: list[ServiceProcess] = []
    try:
        postgres.start()
        redis.start()
        env = stack_processes.celery_env(
            home, free_port(), postgres.url, f"redis://{HOST}:{redis.port}/0"
        )
        env.update(
            {
                "AIRFLOW_CONN_PAINTING_BLOB_STORAGE": json.dumps(
                    local_services.wasb_connection(azurite.connection_string)
                ),
                "AIRFLOW_CONN_PAINTING_MODEL_SERVICE": json.dumps(
                    local_services.http_connection(model_service.port, HOST)
                ),
                "AIRFLOW_VAR_PAINTING_CONTAINER": container,
                "AIRFLOW_VAR_PAINTING_OUTPUT_DIR": str(output_dir),  # shared by both workers
                # Hourly: unpausing adds at most one scheduled run to the triggered ones.
                "PAINTING_INTERVAL_MINUTES": "60",
            }
        )
        run_local.airflow(env, "db", "migrate")  # docker-compose's airflow-init
        components += [
            stack_processes.api_server(env, logs / "api-server.log"),
            stack_processes.scheduler(env, logs / "scheduler.log"),
            stack_processes.background_component("dag-processor", env, logs / "dag-processor.log"),
            stack_processes.background_component("triggerer", env, logs / "triggerer.log"),
            *(stack_processes.celery_worker(n, env, logs / f"{n}.log") for n in WORKERS),
        ]
        with ThreadPoolExecutor(len(components)) as pool:  # start them side by side
            list(pool.map(lambda service: service.start(timeout=180), components))
        base_url = f"http://{HOST}:{env['AIRFLOW__API__PORT']}"
        yield CeleryStack(home, base_url, components), output_dir
    finally:
        # Airflow first, the broker and the database last.
        stack_processes.stop_all(components, [redis, postgres])


def sample_rows(count: int) -> list[dict[str, str]]:
    with open(local_services.SAMPLE_CSV, newline="", encoding="utf-8") as file:
        return list(itertools.islice(csv.DictReader(file), count))


def model_verdict(port: int, row: dict[str, str]) -> tuple[str, str | None]:
    """What the model service answers for a row when asked directly: (kind, issue)."""
    request = urllib.request.Request(
        f"http://{HOST}:{port}/predict/",
        json.dumps(to_request_body(row)).encode(),
        {"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status == 204:
            return "normal", None
        return "anomaly", json.load(response)["issue"]


def ledger_records(output_dir: Path) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Every ledger record, as (kind, record), grouped by run id."""
    by_run: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for kind, name in LEDGER_FILES.items():
        path = output_dir / name
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        for record in map(json.loads, lines):
            by_run.setdefault(record["run_id"], []).append((kind, record))
    return by_run


def test_celery_workers_run_triggered_runs_with_correct_ledgers(
    celery_stack: tuple[CeleryStack, Path], model_service: ServiceProcess
) -> None:
    stack, output_dir = celery_stack
    stack.wait_for(f"a healthy Airflow ({', '.join(COMPONENTS)})", stack.healthy, timeout=120)
    stack.log_in()
    dag = stack.wait_for(f"the dag-processor to register {DAG_ID}", stack.dag, timeout=90)
    assert dag["is_paused"] is True, "the DAG must be created paused"

    triggered = [stack.trigger() for _ in range(TRIGGERED_RUNS)]
    stack.set_paused(False)

    def all_finished() -> list[dict[str, Any]] | None:
        try:
            runs = stack.runs()
        except OSError:  # a busy api-server did not answer in time: ask again
            return None
        failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
        if failed:
            pytest.fail(f"runs failed: {failed}\n{stack.log_tail()}")
        ids = {r["dag_run_id"] for r in runs}
        done = set(triggered) <= ids and all(r["state"] == "success" for r in runs)
        return runs if done else None

    runs = stack.wait_for(f"{TRIGGERED_RUNS} triggered runs to succeed", all_finished, 300)
    stack.set_paused(True)
    # At most one scheduled run besides ours (an hourly schedule, catchup off).
    assert len(runs) - TRIGGERED_RUNS in (0, 1), [r["dag_run_id"] for r in runs]

    # Ledgers: each run recorded one window of 10 consecutive rows, once; consecutive runs took
    # consecutive windows; together they cover rows 0.. without gap or duplicate.
    records = ledger_records(output_dir)
    assert set(records) == {r["dag_run_id"] for r in runs}
    windows = []
    for run in sorted(runs, key=lambda r: r["start_date"]):
        run_records = records[run["dag_run_id"]]
        rows = sorted(record["source"]["row"] for _, record in run_records)
        assert {record["source"]["blob"] for _, record in run_records} == {BLOB}
        assert rows == list(range(rows[0], rows[0] + BATCH_SIZE)), (run["dag_run_id"], rows)
        windows.append(rows)
    starts = [rows[0] for rows in windows]
    assert starts == [i * BATCH_SIZE for i in range(len(runs))], starts

    # Every row is in the ledger the model service's own answer says (asked directly here).
    recorded = {
        record["source"]["row"]: (kind, record.get("prediction", {}).get("issue"))
        for run_records in records.values()
        for kind, record in run_records
    }
    expected = {
        row: model_verdict(model_service.port, values)
        for row, values in enumerate(sample_rows(len(runs) * BATCH_SIZE))
    }
    assert recorded == expected
    # The sample's first window holds its first anomalies: row 0 (temperature out of range) and
    # row 7 (a machine fault).
    assert recorded[0] == ("anomaly", "PAINT-EQ-TEM-INVALID")
    assert recorded[7] == ("anomaly", "PAINT-EQ-MCH")

    # Both Celery workers executed task instances (each records its name as the hostname).
    hostnames = [
        ti["hostname"]
        for run in runs
        for ti in stack.task_instances(run["dag_run_id"])
        if ti["state"] == "success"
    ]
    assert set(hostnames) == set(WORKERS), sorted(hostnames)
