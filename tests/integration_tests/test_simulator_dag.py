"""The painting_simulator DAG, run with dag.test() against real Azurite and the real model service.

Nothing here is mocked: blobs live in Azurite, every request goes over HTTP to the reference
model service (started with the option under test), and the ledgers are read back from disk.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from scripts.local_services import AZURITE_KEY
from tests.support.dag_runs import PREFIX, all_keys, fast_retries, task_output
from tests.support.results_db import STORES
from tests.support.rows import (
    BAD_NUMBER,
    BAD_TIMESTAMP,
    NORMAL_1,
    NORMAL_2,
    TEMPERATURE_TOO_LOW,
    THICK_TOO_HIGH,
    VOLTAGE_TOO_HIGH,
    csv_bytes,
    numbered_rows,
)

pytestmark = pytest.mark.integration

# The rows (tests/support/rows.py) have known verdicts: typical readings are normal; the others
# break a rule of the service (see docs/model-service-contract.md) or cannot be mapped at all.


def test_a_known_window_gives_exactly_the_expected_verdicts(simulator, caplog, capfd):
    rows = [
        NORMAL_1,
        VOLTAGE_TOO_HIGH,
        TEMPERATURE_TOO_LOW,
        THICK_TOO_HIGH,
        BAD_TIMESTAMP,
        BAD_NUMBER,
        NORMAL_2,
    ]
    simulator.upload({"line.csv": csv_bytes(*rows)})
    simulator.set_variable("painting_batch_size", "7")

    run = simulator.run()

    assert run.state == "success"
    blob = PREFIX + "line.csv"
    ledgers = simulator.ledgers()
    anomalies = {r["source"]["row"]: r for r in ledgers["anomaly"]}
    normals = {r["source"]["row"]: r for r in ledgers["normal"]}
    errors = {r["source"]["row"]: r for r in ledgers["error"]}
    assert {row: r["prediction"]["issue"] for row, r in anomalies.items()} == {
        1: "PAINT-EQ-VOL-INVALID",
        2: "PAINT-EQ-TEM-INVALID",
        3: "PAINT-EQ-MCH",
    }
    assert sorted(normals) == [0, 6]
    assert sorted(errors) == [4, 5]

    # Every record carries the common fields.
    for record in [*anomalies.values(), *normals.values(), *errors.values()]:
        assert record["service_name"] == "painting-process-equipment"
        assert record["run_id"] == run.run_id
        assert record["source"]["blob"] == blob
        assert record["timestamp"].endswith("Z")
        assert "expected" not in record  # the blob has no column expected_issue

    # The request body is the original simulator's mapping, field for field.
    assert normals[0]["original_data"] == {
        "machineId": "PAINT-2",
        "timeStamp": "2025-07-23T08:00:10",
        "thick": 19.89,
        "voltage": 258.4,
        "current": 68.9,
        "temper": 34.4,
        "issue": "",
        "isSolved": False,
    }
    # The anomaly record holds the model's answer: the request with the issue filled in.
    assert anomalies[1]["prediction"] == {
        **anomalies[1]["original_data"],
        "issue": "PAINT-EQ-VOL-INVALID",
    }
    # 422 from the service: status and the service's own message.
    assert errors[4]["status"] == 422
    assert "timeStamp" in errors[4]["error"]
    assert errors[4]["original_data"]["timeStamp"] == "not-a-time"
    # A row that cannot be mapped is not sent: the error names blob, row and column.
    assert "status" not in errors[5]
    assert blob in errors[5]["error"]
    assert "row 5" in errors[5]["error"]
    assert "PT_jo_A_Main_1" in errors[5]["error"]
    assert errors[5]["original_data"]["PT_jo_A_Main_1"] == "seventy"

    assert simulator.position()["blob"] == blob
    assert simulator.position()["row"] == 7

    # Task logs: one readable line per anomaly, a one-line summary of the normals, one line
    # per error.
    out = task_output(caplog, capfd)
    assert "ANOMALY PAINT-EQ-VOL-INVALID machine=PAINT-4 time=2025-07-23T08:00:30" in out
    assert "ANOMALY PAINT-EQ-MCH machine=PAINT-2 time=2025-07-23T08:00:50" in out
    assert "NORMAL 2 row(s) from machine(s) PAINT-2, PAINT-3" in out
    assert f"ERROR {blob} row 4 status=422" in out
    assert AZURITE_KEY not in out  # the storage account key never reaches a log


def test_rows_of_a_blob_with_expected_issue_carry_their_expectation(simulator):
    from scripts.local_services import SAMPLE_CSV

    simulator.upload({"painting_sample.csv": SAMPLE_CSV.read_bytes()})
    simulator.set_variable("painting_batch_size", "12")

    run = simulator.run()

    assert run.state == "success"
    ledgers = simulator.ledgers()
    records = sorted(ledgers["anomaly"] + ledgers["normal"], key=lambda r: r["source"]["row"])
    assert [r["source"]["row"] for r in records] == list(range(12))
    # Row 0 of the sample is planted with a bath temperature out of range; row 1 is normal.
    assert records[0]["expected"] == "PAINT-EQ-TEM-INVALID"
    assert "expected" in records[1]
    assert records[1]["expected"] is None
    for record in records:  # the reference model is right on every row of the sample
        assert record["expected"] == (record.get("prediction") or {}).get("issue")
    assert any(r["expected"] is None for r in records)
    assert sum(r["expected"] is not None for r in records) >= 2


def test_consecutive_runs_cross_the_blob_boundary_and_wrap(simulator):
    simulator.upload({"b.csv": numbered_rows(3, machine=2), "a.csv": numbered_rows(4, machine=1)})
    simulator.set_variable("painting_batch_size", "3")
    a, b = PREFIX + "a.csv", PREFIX + "b.csv"
    dag = simulator.dag()

    windows = [all_keys(simulator, simulator.run(dag=dag).run_id) for _ in range(3)]

    assert [run.state for run in simulator.runs] == ["success"] * 3
    assert windows == [
        [(a, 0), (a, 1), (a, 2)],
        [(a, 3), (b, 0), (b, 1)],
        [(a, 0), (a, 1), (b, 2)],  # b row 2, then wrap to the first blob
    ]
    assert (simulator.position()["blob"], simulator.position()["row"]) == (a, 2)


@pytest.mark.parametrize("anomaly_body", ["flat", "predictions"])
def test_a_200_answer_is_an_anomaly_in_both_shapes(simulator, start_model_service, anomaly_body):
    """The original simulator logged flat 200 records as NORMAL; both shapes are anomalies."""
    simulator.use_model_service(start_model_service("--anomaly-body", anomaly_body))
    simulator.upload({"line.csv": csv_bytes(VOLTAGE_TOO_HIGH, NORMAL_1)})
    simulator.set_variable("painting_batch_size", "2")

    run = simulator.run()

    assert run.state == "success"
    ledgers = simulator.ledgers()
    assert [r["source"]["row"] for r in ledgers["anomaly"]] == [0]
    assert ledgers["anomaly"][0]["prediction"]["issue"] == "PAINT-EQ-VOL-INVALID"
    assert [r["source"]["row"] for r in ledgers["normal"]] == [1]
    assert ledgers["error"] == []


def test_a_persistent_500_becomes_error_records_after_retries(simulator, start_model_service):
    # A service whose model is not loaded answers 500 to every prediction (the real 500 case).
    simulator.use_model_service(start_model_service(model=False))
    simulator.upload({"line.csv": csv_bytes(NORMAL_1, VOLTAGE_TOO_HIGH)})
    simulator.set_variable("painting_batch_size", "2")

    run = simulator.run()

    assert run.state == "success"  # the service answered: the window is recorded, not retried
    errors = simulator.ledger("error")
    assert [(r["source"]["row"], r["status"]) for r in errors] == [(0, 500), (1, 500)]
    assert all("Model not loaded" in r["error"] for r in errors)
    assert simulator.ledger("anomaly") == simulator.ledger("normal") == []
    assert simulator.position()["row"] == 2


def test_with_the_service_down_the_run_fails_and_the_next_run_resends_the_window(
    simulator, start_model_service, model_service
):
    stopped = start_model_service()
    stopped.stop()  # a real service that is no longer there: connections are refused
    simulator.use_model_service(stopped)
    simulator.set_variable("painting_request_attempts", "1")
    simulator.upload({"line.csv": numbered_rows(5)})
    simulator.set_variable("painting_batch_size", "2")
    dag = fast_retries(simulator.dag())

    failed = simulator.run(dag=dag)

    assert failed.state == "failed"
    call = failed.get_task_instance("call_model_service")
    assert call.state == "failed"
    assert call.try_number == 1 + dag.get_task("call_model_service").retries  # Airflow retried
    assert simulator.ledgers() == {"anomaly": [], "normal": [], "error": []}
    assert simulator.position() is None  # the position did not move

    simulator.use_model_service(model_service)
    recovered = simulator.run(dag=dag)

    assert recovered.state == "success"
    blob = PREFIX + "line.csv"
    assert all_keys(simulator, recovered.run_id) == [(blob, 0), (blob, 1)]


@pytest.mark.parametrize("results_db", STORES, indirect=True)
def test_re_running_a_finished_run_resends_its_window_without_duplicates(simulator, results_db):
    """Clearing a run (what a user does from the UI) re-sends the same window, not the next one,
    and the ledgers (every store) do not get a second copy of any record."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import clear_task_instances
    from airflow.sdk import DagRunState
    from airflow.utils.session import create_session

    simulator.upload({"line.csv": csv_bytes(NORMAL_1, VOLTAGE_TOO_HIGH, BAD_NUMBER, NORMAL_2)})
    simulator.set_variable("painting_batch_size", "3")
    dag = simulator.dag()
    first = simulator.run(dag=dag)
    before = simulator.ledgers()
    assert sum(len(records) for records in before.values()) == 3

    with create_session() as session:
        run = session.query(DagRun).filter_by(run_id=first.run_id).one()
        clear_task_instances(run.get_task_instances(session=session), session, DagRunState.RUNNING)
    again = dag.test(logical_date=first.logical_date, run_after=first.run_after)

    assert again.run_id == first.run_id
    assert again.state == "success"
    pull = again.get_task_instance("pull_window")
    assert pull.start_date > first.end_date  # the tasks really ran again
    assert simulator.ledgers() == before  # same window, no record written twice
    assert simulator.position()["row"] == 3


def test_manual_params_choose_the_window_and_move_the_position(simulator):
    simulator.upload({"a.csv": numbered_rows(4), "b.csv": numbered_rows(4, machine=2)})
    a, b = PREFIX + "a.csv", PREFIX + "b.csv"

    manual = simulator.run(conf={"start_row": 6, "batch_size": 3})
    scheduled_like = simulator.run()  # no params: Variable batch size (default 10)

    assert manual.state == scheduled_like.state == "success"
    assert all_keys(simulator, manual.run_id) == [(a, 0), (b, 2), (b, 3)]
    following = all_keys(simulator, scheduled_like.run_id)
    assert len(following) == 8  # the whole sequence is shorter than the batch of 10
    assert (a, 1) in following
    assert simulator.position()["blob"] == a
    assert simulator.position()["row"] == 1


def test_a_blob_added_later_joins_in_name_order(simulator):
    simulator.upload({"a.csv": numbered_rows(2), "c.csv": numbered_rows(2, machine=3)})
    simulator.set_variable("painting_batch_size", "2")
    dag = simulator.dag()
    first = simulator.run(dag=dag)
    simulator.upload({"b.csv": numbered_rows(2, machine=2)})
    second = simulator.run(dag=dag)

    assert [r.state for r in simulator.runs] == ["success", "success"]
    assert all_keys(simulator, first.run_id) == [(PREFIX + "a.csv", 0), (PREFIX + "a.csv", 1)]
    assert all_keys(simulator, second.run_id) == [(PREFIX + "b.csv", 0), (PREFIX + "b.csv", 1)]


def test_a_blob_that_disappears_is_skipped(simulator):
    simulator.upload({"a.csv": numbered_rows(3), "b.csv": numbered_rows(2, machine=2)})
    simulator.set_variable("painting_batch_size", "2")
    dag = simulator.dag()
    simulator.run(dag=dag)  # a.csv rows 0-1; the position is now inside a.csv
    simulator.azurite.delete(simulator.container, PREFIX + "a.csv")

    run = simulator.run(dag=dag)

    assert run.state == "success"
    assert all_keys(simulator, run.run_id) == [(PREFIX + "b.csv", 0), (PREFIX + "b.csv", 1)]


def test_no_csv_under_the_prefix_fails_the_run_with_a_clear_reason(simulator, caplog, capfd):
    simulator.upload({"notes.txt": b"not a csv"})
    run = simulator.run(dag=fast_retries(simulator.dag()))

    assert run.state == "failed"
    expected = f"no .csv blob under {simulator.container}/{PREFIX}"
    assert expected in task_output(caplog, capfd)
    assert simulator.position() is None


def test_a_wrong_account_key_fails_with_a_clear_reason_and_never_logs_the_key(
    simulator, caplog, capfd
):
    from scripts.local_services import azurite_connection_string
    from tests.support.connections import wasb_connection

    simulator.upload({"line.csv": csv_bytes(NORMAL_1)})
    wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=" * 2
    port = simulator.azurite.service.port
    simulator.monkeypatch.setenv(
        "AIRFLOW_CONN_PAINTING_BLOB_STORAGE",
        wasb_connection(azurite_connection_string(port, key=wrong_key)),
    )

    run = simulator.run(dag=fast_retries(simulator.dag()))

    assert run.state == "failed"
    out = task_output(caplog, capfd)
    assert "storage authentication failed (connection 'painting_blob_storage')" in out
    assert wrong_key not in out
    assert simulator.position() is None


def test_a_missing_container_fails_with_a_clear_reason(simulator, caplog, capfd):
    simulator.set_variable("painting_container", "no-such-container")

    run = simulator.run(dag=fast_retries(simulator.dag()))

    assert run.state == "failed"
    assert "container 'no-such-container' not found" in task_output(caplog, capfd)


def test_an_airflow_retry_of_the_call_task_resends_the_same_window_once(
    simulator, logs_dir, tmp_path
):
    """The service is down for the first try of call_model_service and comes up before
    Airflow's retry: the retry sends the same window, and each row is recorded once."""
    import threading

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    from scripts import local_services

    port = local_services.free_port()
    late = local_services.model_service(port, logs_dir / f"model-service-{port}.log")
    simulator.use_model_service(late)  # its port, before it is started
    simulator.set_variable("painting_request_attempts", "1")
    simulator.set_variable("painting_batch_size", "3")
    simulator.upload({"line.csv": csv_bytes(NORMAL_1, VOLTAGE_TOO_HIGH, NORMAL_2)})
    dag = simulator.dag()
    for task in dag.tasks:
        task.retry_delay = timedelta(seconds=3)
        task.retry_exponential_backoff = 0
    started = threading.Event()

    def start_when_retrying() -> None:
        for _ in range(600):  # up to a minute
            with create_session() as session:
                waiting = (
                    session.query(TaskInstance)
                    .filter_by(dag_id="painting_simulator", task_id="call_model_service")
                    .filter(TaskInstance.state == "up_for_retry")
                    .count()
                )
            if waiting:
                late.start()
                started.set()
                return
            threading.Event().wait(0.1)

    watcher = threading.Thread(target=start_when_retrying, daemon=True)
    watcher.start()
    try:
        run = simulator.run(dag=dag)
        watcher.join(timeout=5)
    finally:
        late.stop()

    assert started.is_set(), "call_model_service never waited for a retry"
    assert run.state == "success"
    call = run.get_task_instance("call_model_service")
    assert call.try_number == 2
    blob = PREFIX + "line.csv"
    assert all_keys(simulator, run.run_id) == [(blob, 0), (blob, 1), (blob, 2)]
    assert [r["source"]["row"] for r in simulator.ledger("anomaly")] == [1]
