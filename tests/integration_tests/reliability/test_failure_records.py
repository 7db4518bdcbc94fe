"""A failed run leaves one failure record (run, task, cause); a timeout becomes an error record.

dag.test() against real Azurite and the reference model service (down, or slow on purpose); the
failure record's test runs once per results store (JSON-lines files, SQLite, PostgreSQL).
"""

from __future__ import annotations

import json

import pytest

from tests.support.dag_runs import PREFIX, all_keys, fast_retries, task_output
from tests.support.results_db import STORES
from tests.support.rows import NORMAL_1, NORMAL_2, csv_bytes, numbered_rows
from tests.support.secret_leaks import secret_hits

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("results_db", STORES, indirect=True)
def test_a_failed_run_leaves_exactly_one_failure_record_naming_run_task_and_cause(
    simulator, results_db, start_model_service, model_service, account_key, caplog, capfd
):
    stopped = start_model_service()
    stopped.stop()  # connections refused: the service is down
    simulator.use_model_service(stopped)
    simulator.set_variable("painting_request_attempts", "1")
    simulator.set_variable("painting_batch_size", "3")
    simulator.upload({"line.csv": numbered_rows(5)})
    dag = fast_retries(simulator.dag())

    failed = simulator.run(dag=dag)

    assert failed.state == "failed"
    [record] = simulator.failures()
    assert record["record_type"] == "run_failure"
    assert record["run_id"] == failed.run_id
    assert record["dag_id"] == "painting_simulator"
    assert record["task_id"] == "call_model_service"
    assert record["try_number"] == 1 + dag.get_task("call_model_service").retries
    assert record["error"].startswith("ModelServiceUnreachable: model service unreachable: ")
    assert f"blob '{PREFIX}line.csv' row 0" in record["error"]
    # The same line is in the task log (dag.test() runs the callback in the test process).
    out = task_output(caplog, capfd)
    assert f"RUN FAILED {failed.run_id} task call_model_service (try 4): " in out
    # Nothing of the storage secret in the output of the failed run nor in the failure ledger.
    errors_text = json.dumps(simulator.failures())
    conn = simulator.azurite.connection_string
    assert secret_hits(out + errors_text, account_key, conn) == {}
    assert account_key in conn
    assert secret_hits(f"x{conn}x", account_key, conn) != {}  # the grep does find them
    # The row invariant is untouched: no row record for the failed window.
    assert simulator.ledgers() == {"anomaly": [], "normal": [], "error": []}

    simulator.use_model_service(model_service)
    recovered = simulator.run(dag=dag)

    assert recovered.state == "success"
    blob = PREFIX + "line.csv"
    assert all_keys(simulator, recovered.run_id) == [(blob, 0), (blob, 1), (blob, 2)]
    assert len(simulator.failures()) == 1  # a successful run adds none


def test_a_timeout_still_failing_after_the_attempts_becomes_an_error_record(
    simulator, start_model_service
):
    """Every call for machine PAINT-3 answers after 3 s; the client gives up after 1 s."""
    slow = start_model_service(
        "--fault-rate", "1", "--fault-mix", "slow", "--fault-machine", "PAINT-3",
        "--slow-seconds", "3",
    )  # fmt: skip
    simulator.use_model_service(slow)
    simulator.set_variable("painting_request_timeout_seconds", "1")
    simulator.set_variable("painting_request_attempts", "2")
    simulator.set_variable("painting_batch_size", "3")
    # NORMAL_2 is machine 3 (PAINT-3); the rows around it are answered at once.
    simulator.upload({"line.csv": csv_bytes(NORMAL_1, NORMAL_2, NORMAL_1)})

    run = simulator.run()

    assert run.state == "success"
    assert [r["source"]["row"] for r in simulator.ledger("normal")] == [0, 2]
    [error] = simulator.ledger("error")
    assert error["source"]["row"] == 1
    assert error["error"].startswith("model service unreachable: ReadTimeout on POST ")
    assert "status" not in error  # no answer came
    assert simulator.failures() == []
