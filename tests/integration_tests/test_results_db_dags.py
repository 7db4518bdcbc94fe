"""The DAGs writing to the results database: dag.test() runs against real Azurite, the real model
service and a real database (a SQLite file, a real PostgreSQL server).

The simulator and the replay write every record to the tables and say so first in each writing
task's log; a database that is down fails the writing task (retried, the position does not
move, the failure record kept in the file); a wrong password is named, never shown.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from include.painting_simulator import settings
from scripts import local_services
from tests.support.dag_runs import PREFIX, fast_retries, read_jsonl, task_output
from tests.support.results_db import ENV, ResultsDb, postgres_connection, start_postgres
from tests.support.rows import BAD_NUMBER, NORMAL_1, NORMAL_2, VOLTAGE_TOO_HIGH, csv_bytes

pytestmark = pytest.mark.integration

ENGINES = pytest.mark.parametrize("results_db", ["sqlite", "postgresql"], indirect=True)
REPO = Path(__file__).resolve().parents[2]
LOG_TASKS = ("log_anomalies", "log_normals", "log_errors")


def expected_line(results_db: ResultsDb) -> str:
    c = results_db.connection
    if results_db.kind == "sqlite":
        return f"results → sqlite:///{c['host']}, table painting_results"
    return f"results → postgresql://127.0.0.1:{c['port']}/{c['schema']}, table painting_results"


def task_messages(caplog: Any) -> list[str]:
    """The package's own log lines of the run, in order (dag.test() runs tasks one by one)."""
    return [r.getMessage() for r in caplog.records if r.name == "painting_simulator"]


def assert_results_line_opens_each_write(messages: list[str], line: str, writes: int) -> None:
    """Each writing task logs ``line`` before anything it writes: every ``record(s) in`` (or
    ``written to``) line has a ``results →`` line after the previous one."""
    opened = 0
    for message in messages:
        if message.startswith("results → "):
            assert message == line
            opened += 1
        elif " record(s) in " in message or "written to " in message:
            assert opened >= 1, f"{message!r} without its own 'results →' line first"
            opened = 0
    assert sum(m == line for m in messages) == writes


@ENGINES
def test_the_simulator_writes_to_the_database_and_says_so_first(
    simulator, results_db, caplog, capfd
):
    caplog.set_level(logging.INFO, logger="painting_simulator")
    simulator.upload({"line.csv": csv_bytes(NORMAL_1, VOLTAGE_TOO_HIGH, BAD_NUMBER, NORMAL_2)})
    simulator.set_variable("painting_batch_size", "4")

    run = simulator.run()

    assert run.state == "success"
    blob = PREFIX + "line.csv"
    rows = results_db.rows(
        "SELECT row_number, kind, machine_id, reading_time, issue, run_id, blob "
        "FROM painting_results ORDER BY row_number"
    )
    assert [r[:5] for r in rows] == [
        (0, "normal", "PAINT-2", "2025-07-23T08:00:10", None),
        (1, "anomaly", "PAINT-4", "2025-07-23T08:00:30", "PAINT-EQ-VOL-INVALID"),
        (2, "error", "4", "2025-07-23T08:01:10", None),  # unmapped: the raw machineId
        (3, "normal", "PAINT-3", "2025-07-23T08:00:20", None),
    ]
    assert {(r[5], r[6]) for r in rows} == {(run.run_id, blob)}
    assert simulator.ledger(settings.ANOMALY)[0]["prediction"]["issue"] == "PAINT-EQ-VOL-INVALID"
    assert not any(simulator.output_dir.glob("*.jsonl")), "no JSON-lines file is written"
    assert simulator.position()["row"] == 4

    assert_results_line_opens_each_write(task_messages(caplog), expected_line(results_db), 3)
    out = task_output(caplog, capfd)
    assert "1 anomaly record(s) in " + expected_line(results_db).removeprefix("results → ") in out
    if results_db.kind == "postgresql":
        assert results_db.connection["password"] not in out


@ENGINES
def test_the_replay_writes_rows_and_its_report_to_the_database(
    simulator, results_db, caplog, capfd
):
    from airflow.dag_processing.dagbag import DagBag

    caplog.set_level(logging.INFO, logger="painting_simulator")
    simulator.upload({"a.csv": csv_bytes(*[NORMAL_1] * 6, VOLTAGE_TOO_HIGH, BAD_NUMBER)})
    bag = DagBag(dag_folder=str(REPO / "dags" / "painting_replay.py"))
    dag = bag.get_dag(settings.REPLAY_DAG_ID)

    run = dag.test(run_conf={"start_row": 0, "rows": 8, "shards": 2, "concurrency": 2})

    assert run.state == "success"
    kinds = results_db.rows(
        "SELECT kind, count(*) FROM painting_results WHERE run_id = "
        f"'{run.run_id}' GROUP BY kind ORDER BY kind"
    )
    assert kinds == [("anomaly", 1), ("error", 1), ("normal", 6)]
    [report] = results_db.records(settings.REPLAY_REPORTS_TABLE)
    assert report["run_id"] == run.run_id
    assert report["rows"] == 8
    assert results_db.scalar("SELECT passed FROM painting_replay_reports") in (True, 1)
    assert not (simulator.output_dir / settings.REPLAY_SUMMARY_FILE).exists()
    # The shards' progress lives in the database too (workers need no shared directory).
    assert results_db.scalar("SELECT count(*) FROM painting_replay_progress") == 2
    assert not simulator.output_dir.exists() or not any(simulator.output_dir.iterdir())
    # Two shards and summarize: each opens with where its results go.
    line = expected_line(results_db)
    assert_results_line_opens_each_write(task_messages(caplog), line, 3)
    url = line.removeprefix("results → ").removesuffix(", table painting_results")
    assert f"written to {url}, table painting_replay_reports" in task_output(caplog, capfd)


def test_with_the_database_down_the_log_task_fails_is_retried_and_the_position_stays(
    simulator, logs_dir, caplog, capfd
):
    server = start_postgres(local_services.free_port(), logs_dir / "postgres-down.log")
    results_db = ResultsDb.postgresql(server)
    server.stop()  # a real server that is no longer there: connections are refused
    simulator.monkeypatch.setenv(ENV, results_db.env_value)
    simulator.upload({"line.csv": csv_bytes(NORMAL_1, NORMAL_2)})
    simulator.set_variable("painting_batch_size", "2")
    dag = fast_retries(simulator.dag())

    run = simulator.run(dag=dag)

    assert run.state == "failed"
    log_normals = run.get_task_instance("log_normals")
    assert log_normals.state == "failed"
    assert log_normals.try_number == 1 + dag.get_task("log_normals").retries  # Airflow retried
    assert simulator.position() is None  # the next run sends the same window
    out = task_output(caplog, capfd)
    assert "results database of connection 'painting_results_db' (postgresql://127.0.0.1:" in out
    assert results_db.connection["password"] not in out
    # The failure record is not lost with the database: it is kept in the JSON-lines file.
    [record] = read_jsonl(simulator.output_dir / settings.RUN_FAILURES_LEDGER)
    assert (record["run_id"], record["task_id"]) == (run.run_id, "log_normals")
    assert record["error"].startswith("ResultsDatabaseError: results database of connection")


def test_a_wrong_password_fails_the_run_naming_the_connection_never_the_password(
    simulator, postgres_server, caplog, capfd
):
    wrong = "Wrong-Password-Of-The-Test-7"
    connection = postgres_connection(postgres_server, "airflow", password=wrong)
    simulator.monkeypatch.setenv(ENV, json.dumps(connection))
    simulator.upload({"line.csv": csv_bytes(NORMAL_1)})
    simulator.set_variable("painting_batch_size", "1")

    run = simulator.run(dag=fast_retries(simulator.dag()))

    assert run.state == "failed"
    out = task_output(caplog, capfd)
    assert "connection 'painting_results_db'" in out
    assert "password authentication failed" in out
    assert wrong not in out
    assert postgres_server.password not in out
    assert wrong not in (simulator.output_dir / settings.RUN_FAILURES_LEDGER).read_text()
    assert simulator.position() is None
