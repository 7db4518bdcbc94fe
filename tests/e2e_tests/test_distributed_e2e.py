"""Distributed end to end: the configuration of ``docker-compose.yaml``, run natively.

There is no Docker engine here, so the same pieces run as processes, all started by this test on
free ports of 127.0.0.1 and stopped by PID at the end (also on failure): PostgreSQL (metadata DB
and Celery result backend) and Redis (Celery broker) from Debian's packages; Airflow with the
CeleryExecutor — api-server with the execution API, scheduler, dag-processor, triggerer and two
Celery workers named ``worker-1`` and ``worker-2``; real Azurite with the sample CSV and the
reference model service (session fixtures). The DAGs are driven through the REST API v2 with a
token, as a user would: ``painting_simulator`` is registered paused, several runs are triggered,
then it is unpaused; a ``painting_replay`` with ``shards: 2`` is triggered beside them.

The results store is the results database (connection ``painting_results_db``, a URI in
``AIRFLOW_CONN_PAINTING_RESULTS_DB`` given to every component): its own database on the same
PostgreSQL server as the metadata DB. The two workers share nothing on disk but the code: each
has its own AIRFLOW_HOME, task-log folder, row cache and ``painting_output_dir``
(:class:`scripts.distributed_stack.WorkerHome`); nothing else but PostgreSQL, Redis and the
api-server connects them. The test proves every row is in ``painting_results`` exactly once, the
replay report is in ``painting_replay_reports``, the dashboard's API on the api-server gives the
same totals (it reads the database), both workers ran task instances (their logs in their own
folders) and no worker wrote a file into its output dir.

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
import secrets
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from include.painting_simulator import settings
from include.painting_simulator.row_mapping import to_request_body
from scripts import distributed_stack as stack_processes
from scripts import local_services, run_local
from scripts.local_services import ServiceProcess, free_port
from tests.support.airflow_api import DAG_ID, AirflowApi
from tests.support.results_db import ResultsDb, postgres_connection

pytestmark = pytest.mark.e2e

HOST = stack_processes.HOST
WORKERS = ("worker-1", "worker-2")
TRIGGERED_RUNS = 4
BATCH_SIZE = 10
BLOB = "painting-process-equipment/painting_sample.csv"
COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")
RESULTS_DATABASE = "painting_results"  # on the metadata DB's PostgreSQL server
# The replay: rows 0..199 of the sample in two shards (mapped task instances).
REPLAY_CONF = {"start_row": 0, "rows": 200, "shards": 2, "concurrency": 4}


class CeleryStack(AirflowApi):
    """The running stack: its processes, and its api-server's REST API."""

    def __init__(
        self,
        home: Path,
        base_url: str,
        services: list[ServiceProcess],
        workers: dict[str, stack_processes.WorkerHome],
        results: ResultsDb,
    ) -> None:
        self.home, self.base_url, self.services = home, base_url, services
        self.workers, self.results = workers, results

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

    def trigger(self, dag_id: str = DAG_ID, conf: dict[str, Any] | None = None) -> str:
        body = {"logical_date": None, **({"conf": conf} if conf else {})}
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
        return self.request("GET", path)["task_instances"]


@pytest.fixture
def celery_stack(
    tmp_path: Path, azurite: Any, model_service: ServiceProcess
) -> Iterator[CeleryStack]:
    home, logs = tmp_path / "airflow", tmp_path / "logs"
    home.mkdir()
    workers = {name: stack_processes.WorkerHome(tmp_path / name) for name in WORKERS}
    container = f"celery-{uuid.uuid4().hex[:12]}"
    azurite.upload(container, {BLOB: local_services.SAMPLE_CSV.read_bytes()})

    # A password, as a deployment has: the results connection's URI carries it (never printed).
    postgres = stack_processes.Postgres(
        free_port(), logs / "postgres.log", password=secrets.token_urlsafe(18)
    )
    redis = stack_processes.redis(free_port(), tmp_path / "redis", logs / "redis.log")
    components: list[ServiceProcess] = []
    try:
        postgres.start()
        postgres.create_database(RESULTS_DATABASE)
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
                f"AIRFLOW_CONN_{settings.RESULTS_DB_CONN_ID.upper()}": postgres.connection_uri(
                    RESULTS_DATABASE
                ),
                "AIRFLOW_VAR_PAINTING_CONTAINER": container,
                # The control plane's (failure callbacks' fallback); each worker has its own.
                f"AIRFLOW_VAR_{settings.VAR_OUTPUT_DIR.upper()}": str(home / "painting_logs"),
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
            *(
                stack_processes.celery_worker(name, env, logs / f"{name}.log", worker_home)
                for name, worker_home in workers.items()
            ),
        ]
        with ThreadPoolExecutor(len(components)) as pool:  # start them side by side
            list(pool.map(lambda service: service.start(timeout=180), components))
        base_url = f"http://{HOST}:{env['AIRFLOW__API__PORT']}"
        results = ResultsDb("postgresql", postgres_connection(postgres, RESULTS_DATABASE))
        yield CeleryStack(home, base_url, components, workers, results)
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


def stored_rows(results: ResultsDb) -> dict[tuple[str, str, int], list[tuple[str, Any]]]:
    """Every row of ``painting_results`` as (kind, issue), by its (run_id, blob, row_number),
    counted (a list: more than one entry would be a duplicate)."""
    by_key: dict[tuple[str, str, int], list[tuple[str, Any]]] = {}
    query = f"SELECT run_id, blob, row_number, kind, issue FROM {settings.RESULTS_TABLE}"
    for run_id, blob, row, kind, issue in results.rows(query):
        by_key.setdefault((run_id, blob, row), []).append((kind, issue))
    return by_key


def logged_task_instances(logs: Path) -> set[tuple[str, str, str, int, int]]:
    """(dag_id, run_id, task_id, map_index, try) of every task log under a worker's log folder
    (Airflow's layout ``dag_id=…/run_id=…/task_id=…/[map_index=…/]attempt=….log``)."""
    found = set()
    for path in logs.glob("dag_id=*/run_id=*/task_id=*/**/attempt=*.log"):
        parts = dict(p.split("=", 1) for p in path.relative_to(logs).parent.parts)
        attempt = int(path.stem.split("=", 1)[1])
        found.add((parts["dag_id"], parts["run_id"], parts["task_id"],
                   int(parts.get("map_index", -1)), attempt))  # fmt: skip
    return found


def test_celery_workers_with_separate_directories_record_every_row_once_in_the_database(
    celery_stack: CeleryStack, model_service: ServiceProcess
) -> None:
    stack = celery_stack
    stack.wait_for(f"a healthy Airflow ({', '.join(COMPONENTS)})", stack.healthy, timeout=120)
    stack.log_in()
    dag = stack.wait_for(f"the dag-processor to register {DAG_ID}", stack.dag, timeout=90)
    assert dag["is_paused"] is True, "the DAG must be created paused"
    replay_dag = settings.REPLAY_DAG_ID
    stack.wait_for(f"the dag-processor to register {replay_dag}", lambda: stack.dag(replay_dag), 90)

    triggered = [stack.trigger() for _ in range(TRIGGERED_RUNS)]
    replay_run = stack.trigger(replay_dag, REPLAY_CONF)
    stack.set_paused(False)

    def all_finished() -> list[dict[str, Any]] | None:
        try:
            runs, replays = stack.runs(), stack.runs(replay_dag)
        except OSError:  # a busy api-server did not answer in time: ask again
            return None
        failed = [r["dag_run_id"] for r in runs + replays if r["state"] == "failed"]
        if failed:
            pytest.fail(f"runs failed: {failed}\n{stack.log_tail()}")
        ids = {r["dag_run_id"] for r in runs}
        done = set(triggered) <= ids and all(r["state"] == "success" for r in runs)
        replay = next((r for r in replays if r["dag_run_id"] == replay_run), None)
        done = done and replay is not None and replay["state"] == "success"
        return runs if done else None

    what = f"{TRIGGERED_RUNS} triggered runs and the replay to succeed"
    runs = stack.wait_for(what, all_finished, 300)
    stack.set_paused(True)
    # At most one scheduled run besides ours (an hourly schedule, catchup off).
    assert len(runs) - TRIGGERED_RUNS in (0, 1), [r["dag_run_id"] for r in runs]

    # painting_results: exactly the expected rows, each once. Each simulator run recorded one
    # window of 10 consecutive rows; consecutive runs took consecutive windows (rows 0.. without
    # gap); the replay recorded rows 0..199 under its own run id.
    stored = stored_rows(stack.results)
    duplicates = {key: entries for key, entries in stored.items() if len(entries) != 1}
    assert not duplicates, duplicates
    ordered = sorted(runs, key=lambda r: r["start_date"])
    expected_keys = {
        (run["dag_run_id"], BLOB, i * BATCH_SIZE + offset)
        for i, run in enumerate(ordered)
        for offset in range(BATCH_SIZE)
    }
    expected_keys |= {(replay_run, BLOB, row) for row in range(REPLAY_CONF["rows"])}
    assert set(stored) == expected_keys, sorted(set(stored) ^ expected_keys)[:20]

    # Every row is of the kind (and issue) the model service's own answer says (asked directly).
    verdicts = {
        row: model_verdict(model_service.port, values)
        for row, values in enumerate(sample_rows(max(len(runs) * BATCH_SIZE, REPLAY_CONF["rows"])))
    }
    for (run_id, _, row), [entry] in stored.items():
        assert entry == verdicts[row], (run_id, row, entry)
    # The sample's first window holds its first anomalies: row 0 (temperature out of range) and
    # row 7 (a machine fault).
    assert verdicts[0] == ("anomaly", "PAINT-EQ-TEM-INVALID")
    assert verdicts[7] == ("anomaly", "PAINT-EQ-MCH")

    # The replay's report is in painting_replay_reports, once, and counts its rows.
    reports = stack.results.records(settings.REPLAY_REPORTS_TABLE)
    assert [r["run_id"] for r in reports] == [replay_run]
    assert reports[0]["rows"] == REPLAY_CONF["rows"]

    # The dashboard's API, served by the api-server, answers from the same database: its
    # all-time totals are the table's rows per kind, its last run's counts that run's rows.
    summary = stack.request("GET", "/painting/api/summary?range=all")
    per_kind = dict(stack.results.rows("SELECT kind, count(*) FROM painting_results GROUP BY 1"))
    totals = {kind: per_kind.get(kind, 0) for kind in settings.KINDS}
    assert summary["totals"] == summary["counts"] == {**totals, "total": len(stored)}
    last = summary["simulator"]["last_run"]
    assert last["run_id"] in {r["dag_run_id"] for r in runs}
    of_last = [entry for (run_id, _, _), [entry] in stored.items() if run_id == last["run_id"]]
    assert last["records"] == {kind: sum(k == kind for k, _ in of_last) for kind in settings.KINDS}
    assert sum(last["records"].values()) == BATCH_SIZE

    # Both Celery workers executed task instances (each records its name as the hostname), the
    # replay's two shards included; each successful try's log is in its worker's own log folder
    # only.
    instances = [
        (dag_id, run_id, ti)
        for dag_id, run_id in [(DAG_ID, r["dag_run_id"]) for r in runs] + [(replay_dag, replay_run)]
        for ti in stack.task_instances(run_id, dag_id)
        if ti["state"] == "success"
    ]
    shards = [ti for dag_id, _, ti in instances if ti["task_id"] == "replay_shard"]
    assert len(shards) == REPLAY_CONF["shards"], shards
    assert {ti["hostname"] for _, _, ti in instances} == set(WORKERS)
    for name, worker in stack.workers.items():
        ran = {
            (dag_id, run_id, ti["task_id"], ti["map_index"], ti["try_number"])
            for dag_id, run_id, ti in instances
            if ti["hostname"] == name
        }
        assert ran <= logged_task_instances(worker.logs), (name, ran)
        others = [w for n, w in stack.workers.items() if n != name]
        assert not any(ran & logged_task_instances(other.logs) for other in others), name

    # The writing tasks' logs name the database (never its password); no log has the password.
    store_line = f"postgresql://{HOST}:{stack.results.connection['port']}/{RESULTS_DATABASE}"
    password = stack.results.connection["password"]
    for name, worker in stack.workers.items():
        texts = [p.read_text(errors="replace") for p in worker.logs.rglob("*.log")]
        assert any(store_line in text for text in texts), (name, store_line)
    logs = [*stack.home.parent.rglob("*.log")]
    assert [str(p) for p in logs if password in p.read_text(errors="replace")] == []

    # The store is the database: no worker wrote a ledger (or any file) to its output dir.
    for name, worker in stack.workers.items():
        written = sorted(p for p in worker.output_dir.rglob("*") if p.is_file())
        assert written == [], (name, written)
