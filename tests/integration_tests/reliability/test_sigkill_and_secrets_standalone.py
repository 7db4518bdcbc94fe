"""A real SIGKILL of a task process under a real scheduler; every log file grepped for secrets.

``airflow standalone`` (scheduler, dag-processor, api-server, triggerer; LocalExecutor) runs in a
throw-away AIRFLOW_HOME, wired to Azurite with a secret account of its own and to the reference
model service in fault mode: the first call for one machine answers only after a minute. While
``call_model_service`` waits for that answer, the test finds the task's process by the ``pid`` of
its task instance (checked to descend from the standalone this test started) and SIGKILLs it.
Airflow retries the task; the window must end up in the ledgers exactly once, each anomaly as the
fault-free service answers it. A second, manual run follows. Then every file under the Airflow
home's ``logs/`` (the task log of every try, the killed one included) and the standalone's own
output (scheduler, dag-processor, api-server, triggerer) are searched for the account key (also
URL-quoted) and the connection string: zero hits.

It runs on every store: the JSON-lines files, a SQLite and a PostgreSQL results database (the
connection ``painting_results_db`` given to the standalone's real task processes; the log task's
own log must open with its ``results →`` line; PostgreSQL's password is grepped for too).
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests

from include.painting_simulator.records import is_row_record
from include.painting_simulator.settings import (
    LEDGER_FILES,
    RESULTS_TABLE,
    RUN_FAILURES_LEDGER,
    RUN_FAILURES_TABLE,
)
from scripts import local_services
from tests.support.airflow_api import DAG_ID
from tests.support.results_db import ENV as RESULTS_DB_ENV
from tests.support.results_db import STORES
from tests.support.secret_leaks import secret_hits
from tests.support.standalone import HOST, Standalone

pytestmark = pytest.mark.e2e

PREFIX = "painting-process-equipment/"
SLOW_MACHINE = "PAINT-3"


def descends_from(pid: int, ancestor: int) -> bool:
    """True if ``pid`` is ``ancestor`` or one of its descendants (walks /proc parent links)."""
    while pid > 1:
        if pid == ancestor:
            return True
        if (stat := local_services.proc_stat(pid)) is None:
            return False
        pid = int(stat[1])  # field 4: the parent's pid
    return False


# The api-server of a busy machine can be slow to answer: polls tolerate a missed answer.
def runs(server: Standalone) -> list[dict]:
    answer = server.try_request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=100")
    return (answer or {}).get("dag_runs") or []


def run_state(server: Standalone, run_id: str) -> str | None:
    answer = server.try_request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
    return (answer or {}).get("state")


def finished(server: Standalone, run_id: str):
    return lambda: run_state(server, run_id) in ("success", "failed")


def row_records(output_dir: Path, run_id: str, results_db=None) -> list[dict]:
    if results_db is not None:
        return [r for r in results_db.records(RESULTS_TABLE) if r["run_id"] == run_id]
    records = []
    for name in LEDGER_FILES.values():
        path = output_dir / name
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                if record.get("run_id") == run_id and is_row_record(record):
                    records.append(record)
    return records


@pytest.mark.parametrize("results_db", STORES, indirect=True)
def test_a_sigkilled_task_is_retried_without_losing_or_duplicating_rows_and_no_log_has_the_key(
    tmp_path, azurite, account_key, model_service, start_model_service, results_db
):
    slow = start_model_service(
        "--fault-rate", "1", "--fault-mix", "slow", "--fault-machine", SLOW_MACHINE,
        "--fault-limit", "1", "--slow-seconds", "120",
    )  # fmt: skip
    home, output_dir = tmp_path / "airflow", tmp_path / "painting_logs"
    home.mkdir()
    container = f"kill-{uuid.uuid4().hex[:12]}"
    azurite.upload(container, {PREFIX + "sample.csv": local_services.SAMPLE_CSV.read_bytes()})
    port = local_services.free_port()
    env = local_services.standalone_env(
        home, port, azurite.connection_string, slow.port, container, output_dir, HOST
    )
    # One scheduled run when unpaused (catchup is off), the next one only tomorrow.
    env["PAINTING_INTERVAL_MINUTES"] = "1440"
    if results_db is not None:
        env[RESULTS_DB_ENV] = results_db.env_value
    server = Standalone(env, port, home, tmp_path / "standalone.log")
    server.start()
    try:
        server.wait_for(
            "a healthy Airflow",
            lambda: server.healthy(("metadatabase", "scheduler", "dag_processor")),
            timeout=180,
        )
        server.log_in()
        server.wait_for(f"{DAG_ID} to be registered", server.dag, timeout=90)
        server.set_paused(False)
        run = server.wait_for("the scheduled run", lambda: (runs(server) or [None])[0], 90)
        run_id = run["dag_run_id"]
        ti_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/call_model_service"

        def slow_call_in_flight() -> dict | None:
            stats = requests.get(f"http://{HOST}:{slow.port}/faults", timeout=5).json()
            ti = server.try_request("GET", ti_path)
            if stats["in_flight"].get("slow") and ti and ti["state"] == "running" and ti["pid"]:
                return ti
            return None

        ti = server.wait_for(
            "call_model_service waiting on a slow answer", slow_call_in_flight, 120
        )
        pid = ti["pid"]
        assert server.process is not None
        assert descends_from(pid, server.process.pid), f"pid {pid} is not ours"
        os.kill(pid, signal.SIGKILL)  # a real kill: no exception, no cleanup in the task

        server.wait_for("the run to finish after the retry", finished(server, run_id), 180)
        assert run_state(server, run_id) == "success"
        call = server.request("GET", ti_path)
        assert call["try_number"] == 2, "Airflow retried the killed task once"
        killed_log = server.task_log(run_id, "call_model_service", 1)
        assert "SIGKILL" in killed_log or "Process terminated by signal" in killed_log, killed_log

        # The second run: triggered by hand, the service now answers every call at once.
        manual = server.request(
            "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": {}}
        )
        server.wait_for("the manual run to finish", finished(server, manual["dag_run_id"]), 180)
        assert run_state(server, manual["dag_run_id"]) == "success"
        # The log task's own first line says where its results go.
        lines = server.task_log(run_id, "log_normals", 1).splitlines()
        first = next(i for i, line in enumerate(lines) if "record(s)" in line or "→" in line)
        where = f"{results_db.kind}://" if results_db is not None else str(output_dir)
        assert lines[first].startswith(f"results → {where}"), lines
        log_files = sorted(p for p in (home / "logs").rglob("*") if p.is_file())
    finally:
        stopped_on_sigint = server.stop()

    # The invariant: each window's 10 rows in exactly one ledger, once; verdicts as without faults.
    windows = {run_id: range(0, 10), manual["dag_run_id"]: range(10, 20)}
    for this_run, rows in windows.items():
        records = row_records(output_dir, this_run, results_db)
        keys = Counter((r["source"]["blob"], r["source"]["row"]) for r in records)
        assert keys == Counter({(PREFIX + "sample.csv", row): 1 for row in rows}), this_run
        for record in records:
            answer = requests.post(
                f"http://{HOST}:{model_service.port}/predict/",
                json=record["original_data"],
                timeout=10,
            )
            expected = answer.json() if answer.status_code == 200 else None
            assert record.get("prediction") == expected, record
    assert not any("record_type" in json.loads(line) for line in (
        (output_dir / LEDGER_FILES["error"]).read_text().splitlines()
        if (output_dir / LEDGER_FILES["error"]).exists() else []
    )), "row ledgers hold row records only"  # fmt: skip
    assert not (output_dir / RUN_FAILURES_LEDGER).exists(), "no failure record: both runs succeeded"
    if results_db is not None:
        assert results_db.records(RUN_FAILURES_TABLE) == []
        assert not any(output_dir.glob("*.jsonl")), "the database store writes no file"

    # No secret in any log file of the run (task logs of every try, scheduler, dag-processor).
    assert any("call_model_service" in str(p) for p in log_files), log_files
    texts = {str(p): p.read_text(errors="replace") for p in log_files}
    texts["standalone output"] = server.log_path.read_text(errors="replace")
    db_password = (results_db.connection.get("password") if results_db else None) or ""

    def leaks(text: str) -> dict[str, int]:
        found = secret_hits(text, account_key, azurite.connection_string)
        if db_password and db_password in text:
            found["results database password"] = text.count(db_password)
        return found

    hits = {name: h for name, t in texts.items() if (h := leaks(t))}
    print(f"\nsecrets grep: {len(texts)} files, hits: {hits}")
    assert hits == {}
    assert stopped_on_sigint, f"standalone needed SIGKILL to stop:\n{server.log_tail()}"
