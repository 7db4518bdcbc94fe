"""End to end with a real scheduler: ``airflow standalone`` runs the DAG on its schedule.

Everything is real: Azurite and the reference model service (session fixtures, started on free
ports and stopped by PID), and ``airflow standalone`` (scheduler, dag-processor, api-server with
the execution API, triggerer; SQLite, LocalExecutor) in its own AIRFLOW_HOME on free ports, with a
15-second schedule. The DAG is driven through the REST API like a user would in the UI. The
simulator's anomalies update the Asset painting_issue_logs, on which the scheduler starts
painting_alerts, which mails a real SMTP server (aiosmtpd, started by the test).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from include.painting_simulator.settings import ALERTS_DAG_ID, LEDGER_FILES
from scripts import local_services, run_local
from tests.support.airflow_api import DAG_ID
from tests.support.smtp_server import SmtpServer, text
from tests.support.standalone import Standalone, standalone_with_sample

pytestmark = pytest.mark.e2e

INTERVAL_SECONDS = 15
LEDGERS = tuple(LEDGER_FILES.values())


def ledger_records(output_dir: Path, run_id: str) -> list[dict[str, Any]]:
    records = []
    for name in LEDGERS:
        path = output_dir / name
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            records += [r for r in map(json.loads, lines) if r.get("run_id") == run_id]
    return records


ALERT_RULES = {
    "conn_id": "smtp_alerts",
    "to": ["line-lead@example.com"],
    "interval_minutes": 60,
    "rules": [{"name": "any", "type": "anomalies_in_window", "min_anomalies": 1, "minutes": 10}],
}


@pytest.fixture
def standalone(
    tmp_path: Path,
    azurite: Any,
    model_service: local_services.ServiceProcess,
    smtp_server: SmtpServer,
) -> Iterator[tuple[Standalone, Path]]:
    """A running ``airflow standalone`` wired to Azurite (with the sample), the model service
    and, for painting_alerts, the SMTP server."""
    env = {
        "PAINTING_INTERVAL_MINUTES": str(INTERVAL_SECONDS / 60),
        "AIRFLOW_VAR_PAINTING_ALERT_RULES": json.dumps(ALERT_RULES),
        "AIRFLOW_CONN_SMTP_ALERTS": smtp_server.connection(),
    }
    with standalone_with_sample(tmp_path, azurite, model_service.port, env) as running:
        yield running


def test_scheduler_runs_the_dag_while_unpaused_and_stops_when_paused(
    standalone: tuple[Standalone, Path], smtp_server: SmtpServer
) -> None:
    server, output_dir = standalone
    components = ("metadatabase", "scheduler", "dag_processor")
    server.wait_for(
        "a healthy Airflow (scheduler, dag-processor)",
        lambda: server.healthy(components),
        timeout=120,
    )
    server.log_in()

    dag = server.wait_for(f"the dag-processor to register {DAG_ID}", server.dag, timeout=60)
    assert dag["is_paused"] is True, "the DAG must be created paused"
    assert server.runs() == []
    alerts = server.wait_for(
        f"the dag-processor to register {ALERTS_DAG_ID}",
        lambda: server.dag(ALERTS_DAG_ID),
        timeout=60,
    )
    assert alerts["is_paused"] is True
    server.set_paused(False, ALERTS_DAG_ID)  # first: it is started by the simulator's asset

    server.set_paused(False)

    def scheduled_success() -> dict[str, Any] | None:
        return next(
            (r for r in server.runs() if r["run_type"] == "scheduled" and r["state"] == "success"),
            None,
        )

    run = server.wait_for("a successful scheduled run", scheduled_success, timeout=120)
    records = ledger_records(output_dir, run["dag_run_id"])
    sources = sorted((r["source"]["blob"], r["source"]["row"]) for r in records)
    assert len(sources) == 10, f"one ledger record per row of the 10-row window: {sources}"
    assert len(set(sources)) == 10, sources

    # The results are in the task log viewer too: one line per anomaly of the run, and
    # never the storage account key.
    anomalies = [r for r in records if "prediction" in r]
    assert anomalies, "the first window of the sample holds anomalies (rows 0 and 7)"
    log = server.task_log(run["dag_run_id"], "log_anomalies")
    for record in anomalies:
        data = record["original_data"]
        line = f"ANOMALY {record['prediction']['issue']} machine={data['machineId']}"
        assert f"{line} time={data['timeStamp']}" in log
    assert local_services.AZURITE_KEY not in log
    assert local_services.AZURITE_KEY not in server.task_log(run["dag_run_id"], "pull_window")

    # The anomalies updated the Asset: the scheduler started painting_alerts, which mailed one
    # digest naming the simulator's run (later runs are within the rule's interval: no more).
    def alerts_success() -> dict[str, Any] | None:
        return next(
            (r for r in server.runs(ALERTS_DAG_ID) if r["run_type"] == "asset_triggered"
             and r["state"] == "success"),
            None,
        )  # fmt: skip

    server.wait_for("an asset-triggered painting_alerts run", alerts_success, timeout=120)
    server.wait_for("the digest at the SMTP server", lambda: smtp_server.messages, timeout=30)
    assert smtp_server.messages[0]["Subject"].startswith("[painting] any: ")
    assert run["dag_run_id"] in text(smtp_server.messages[0])

    server.set_paused(True)
    time.sleep(5)  # a run the scheduler was creating as we paused may still appear
    before = {r["dag_run_id"] for r in server.runs()}
    time.sleep(3 * INTERVAL_SECONDS)
    after = {r["dag_run_id"] for r in server.runs()}
    assert after == before, f"runs created while paused: {sorted(after - before)}"
    server.set_paused(True, ALERTS_DAG_ID)
    assert len(smtp_server.messages) == 1  # one digest per rule per interval, not one per run

    # Stop only once no task is in flight (as make run does at Ctrl-C): standalone's shutdown
    # waits for its components' output, and a task cut off mid-run can hold that pipe open past
    # the fixture's stop check. A paused DAG's running tasks still finish; none start.
    server.wait_for(
        "no task instance queued or running",
        lambda: run_local.active_tasks(server.base_url, server.token) == 0,
        timeout=120,
    )
