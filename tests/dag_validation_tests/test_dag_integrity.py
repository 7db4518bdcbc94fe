"""Every DAG file parses cleanly, follows the project's conventions, and stays cheap to parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
# A connection check answers within the timeout its user chose: its sensor waits and pokes again
# by itself, so Airflow retries would only multiply the wait. Such DAGs carry this tag.
CHECK_TAG = "connection-check"
# The check DAGs are built on provider sensors (WasbPrefixSensor, HttpSensor): parsing them
# imports what those provider modules import at module level, and nothing heavier.
PROVIDER_SENSOR_IMPORTS = {
    "check_azure_storage_connection.py": {"azure", "requests"},
    "check_model_service_connection.py": {"requests"},
}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_dag_files_have_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "painting_simulator" in dagbag.dag_ids


def test_every_dag_has_an_owner_tags_docs_and_retries(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert len(dag.doc_md or "") > 200, f"{dag_id} has no real doc_md"
        for task in dag.tasks:
            assert task.owner not in ("", "airflow"), f"{dag_id}.{task.task_id} has no owner"
            if CHECK_TAG in dag.tags:
                assert task.retries == 0, f"{dag_id}.{task.task_id} retries a connection check"
            else:
                assert task.retries >= 2, f"{dag_id}.{task.task_id} has retries={task.retries}"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_parsing_a_dag_file_imports_neither_pandas_nor_the_azure_sdk(dag_file):
    """Heavy imports belong inside tasks: the dag-processor parses every file over and over."""
    probe = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('probe', {str(dag_file)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "heavy = ('pandas', 'numpy', 'azure', 'requests')\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    heavy = set(json.loads(out.strip().splitlines()[-1]))
    assert heavy <= PROVIDER_SENSOR_IMPORTS.get(dag_file.name, set())
    assert not heavy & {"pandas", "numpy"}


def test_the_simulator_is_scheduled_safely(dagbag):
    dag = dagbag.dags["painting_simulator"]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.is_paused_upon_creation is True
    for task in dag.tasks:
        assert task.retry_exponential_backoff > 1
    assert set(dag.params) == {"batch_size", "start_row"}


def test_the_schedule_interval_comes_from_the_environment():
    probe = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"dag = DagBag(dag_folder={str(REPO / 'dags' / 'painting_simulator.py')!r})"
        ".dags['painting_simulator']\n"
        "print(dag.timetable.delta.total_seconds())\n"
    )
    env = {**os.environ, "PAINTING_INTERVAL_MINUTES": "5"}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert float(out.strip().splitlines()[-1]) == timedelta(minutes=5).total_seconds()


def test_the_simulator_has_the_branching_shape(dagbag):
    from airflow.sdk import BranchMixIn, TriggerRule

    dag = dagbag.dags["painting_simulator"]
    route = dag.get_task("route_results")
    assert isinstance(route, BranchMixIn)
    assert route.upstream_task_ids == {"call_model_service"}
    assert dag.get_task("call_model_service").upstream_task_ids == {"pull_window"}
    logs = {"log_anomalies": "anomalies", "log_normals": "normals", "log_errors": "errors"}
    for task_id, label in logs.items():
        assert "route_results" in dag.get_task(task_id).upstream_task_ids
        assert dag.get_edge_info("route_results", task_id).get("label") == label
    join = dag.get_task("advance_position")
    assert set(logs) <= join.upstream_task_ids
    assert join.trigger_rule == TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS


def test_the_anomaly_ledger_is_an_asset_outlet(dagbag):
    dag = dagbag.dags["painting_simulator"]
    outlets = dag.get_task("log_anomalies").outlets
    assert [asset.name for asset in outlets] == ["painting_issue_logs"]


def test_the_alerts_are_scheduled_on_the_anomaly_ledger_asset(dagbag):
    dag = dagbag.dags["painting_alerts"]
    # Data-aware scheduling: a run whenever log_anomalies updates the asset, no time schedule.
    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"
    assert [asset.name for asset in dag.timetable.asset_condition.objects] == [
        "painting_issue_logs"
    ]
    assert dag.max_active_runs == 1  # each run moves the watermark the next starts from
    assert dag.get_task("notify").upstream_task_ids == {"evaluate"}
