"""Shadow mode of painting_simulator, run with dag.test(): a candidate beside production.

Real Azurite, a real production reference model service and, as the candidate, a second real
one started as another model version (``--mch-threshold 3.0``: on the committed sample it blames
the machine on 23 known rows where the reference blames an input), a closed port, or a tiny real
HTTP server answering garbage (tests/support/http_servers.py).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from scripts import local_services
from scripts.local_services import SAMPLE_CSV
from tests.support.dag_runs import PREFIX, all_keys, fast_retries, task_output
from tests.support.rows import BAD_NUMBER, NORMAL_1, VOLTAGE_TOO_HIGH, csv_bytes, numbered_rows

pytestmark = pytest.mark.integration

CANDIDATE = "painting_model_service_candidate"
CANDIDATE_ENV = "AIRFLOW_CONN_PAINTING_MODEL_SERVICE_CANDIDATE"
VARIABLE = "painting_candidate_conn_id"
SECRET = "candidate-secret-3e1f"
# Rows 110..119 of the sample: row 114 is one of the known disagreements (tests/unit_tests/
# test_reference_model.py finds them with the model itself); the others agree.
WINDOW = {"start_row": 110, "batch_size": 10}


def use_candidate(simulator: Any, port: int, password: str | None = None) -> None:
    connection = local_services.http_connection(port)
    if password:
        connection.update(login="shadow", password=password)
    simulator.monkeypatch.setenv(CANDIDATE_ENV, json.dumps(connection))
    simulator.set_variable(VARIABLE, CANDIDATE)


def label(record: dict[str, Any], kind: str) -> str:
    return record["prediction"]["issue"] if kind == "anomaly" else kind


def candidate_label(verdict: dict[str, Any]) -> str:
    return verdict["issue"] if verdict["kind"] == "anomaly" else verdict["kind"]


def test_a_known_disagreement_carries_the_candidates_label_and_the_log_shows_agreement(
    simulator, start_model_service, caplog, capfd
):
    simulator.upload({"painting_sample.csv": SAMPLE_CSV.read_bytes()})
    candidate = start_model_service("--model-version", "candidate-2", "--mch-threshold", "3.0")
    use_candidate(simulator, candidate.port, password=SECRET)

    run = simulator.run(WINDOW)

    assert run.state == "success"
    ledgers = simulator.ledgers()
    records = {r["source"]["row"]: (kind, r) for kind, rs in ledgers.items() for r in rs}
    assert sorted(records) == list(range(110, 120))
    for row, (kind, record) in records.items():
        verdict = record["candidate"]
        assert set(verdict) == {"kind", "issue", "status", "latency_ms"}
        assert verdict["status"] == {"anomaly": 200, "normal": 204}[verdict["kind"]]
        assert verdict["latency_ms"] > 0
        assert label(record, kind) == (record["expected"] or "normal")  # production's own
        if row != 114:
            assert candidate_label(verdict) == label(record, kind)
    kind, row_114 = records[114]
    assert (kind, row_114["prediction"]["issue"]) == ("anomaly", "PAINT-EQ-CUR-LOW")
    assert row_114["candidate"]["issue"] == "PAINT-EQ-MCH"
    assert list(row_114)[-1] == "original_data"  # the replay's record layout

    out = task_output(caplog, capfd)
    assert f"shadow mode on (Variable {VARIABLE}): every row also goes to http://127.0.0.1:" in out
    assert f"(connection {CANDIDATE}), one attempt each" in out
    assert f"candidate {CANDIDATE}: agreement 90.0% on this window; 10 row(s) sent to both" in out
    blob = PREFIX + "painting_sample.csv"
    assert f"differ: {blob} row 114: production PAINT-EQ-CUR-LOW, candidate PAINT-EQ-MCH" in out
    assert SECRET not in out  # the candidate connection's password never reaches a log

    # The Variable unset (the connection still defined): no shadow mode, records as before.
    simulator.monkeypatch.delenv(f"AIRFLOW_VAR_{VARIABLE.upper()}")
    caplog.clear()  # the first run's output was read: capfd's with it
    second = simulator.run({"start_row": 114, "batch_size": 1})
    assert second.state == "success"
    (again,) = [r for r in simulator.ledger("anomaly") if r["run_id"] == second.run_id]
    assert "candidate" not in again
    assert "shadow mode on" not in task_output(caplog, capfd)


@pytest.mark.parametrize("candidate_is", ["down", "answering garbage"])
def test_a_candidate_that_is_down_or_answers_garbage_never_fails_the_run(
    simulator, answering_server, candidate_is, caplog, capfd
):
    simulator.upload({"line.csv": csv_bytes(NORMAL_1, VOLTAGE_TOO_HIGH, BAD_NUMBER)})
    simulator.set_variable("painting_batch_size", "3")
    if candidate_is == "down":
        port = local_services.free_port()  # nothing listens there
    else:  # a real server whose 200 answers are not JSON
        port = answering_server({("POST", "/predict/"): (200, "<html>oops</html>")})
    use_candidate(simulator, port)

    run = simulator.run()

    assert run.state == "success"
    call = run.get_task_instance("call_model_service")
    assert call.try_number == 1
    ledgers = simulator.ledgers()
    normal, anomaly, error = ledgers["normal"], ledgers["anomaly"], ledgers["error"]
    assert [r["source"]["row"] for r in normal] == [0]
    assert [r["prediction"]["issue"] for r in anomaly] == ["PAINT-EQ-VOL-INVALID"]
    assert [r["source"]["row"] for r in error] == [2]
    assert "candidate" not in error[0]  # unmappable: sent to neither service
    cause = "model service unreachable" if candidate_is == "down" else "200 answer is not JSON"
    for record in normal + anomaly:
        verdict = record["candidate"]
        assert verdict["kind"] == "error"
        assert verdict["issue"] is None
        assert verdict["status"] == (None if candidate_is == "down" else 200)
        assert cause in verdict["error"]
    assert simulator.position()["row"] == 3  # the window is done: the position moved
    out = task_output(caplog, capfd)
    assert f"candidate {CANDIDATE}: agreement n/a (no row got a verdict from both)" in out
    assert f"candidate error (first of 2): {cause}" in out


def test_a_variable_naming_no_connection_fails_at_once_before_any_row_is_sent(
    simulator, caplog, capfd
):
    simulator.upload({"line.csv": numbered_rows(3)})
    simulator.set_variable(VARIABLE, "painting_model_service_candidat")

    run = simulator.run()

    assert run.state == "failed"
    call = run.get_task_instance("call_model_service")
    assert call.state == "failed"
    assert call.try_number == 1  # an operator's mistake: not retried
    message = (
        f"Airflow Variable {VARIABLE}: connection 'painting_model_service_candidat' is not defined"
    )
    assert message in task_output(caplog, capfd)
    assert simulator.ledgers() == {"anomaly": [], "normal": [], "error": []}
    assert simulator.position() is None
    (failure,) = simulator.failures()
    assert failure["task_id"] == "call_model_service"
    assert message in failure["error"]


def test_task_retries_keep_every_row_once_and_each_carries_the_candidate(
    simulator, start_model_service, model_service
):
    # Production drops half its connections and is not retried within the task: a window whose
    # first row gets no answer fails call_model_service, and Airflow retries the task.
    faulty = start_model_service("--fault-rate", "0.5", "--fault-seed", "13", "--fault-mix", "drop")
    simulator.use_model_service(faulty)
    simulator.set_variable("painting_request_attempts", "1")
    use_candidate(simulator, model_service.port)  # the fault-free reference as the candidate
    simulator.upload({"a.csv": numbered_rows(12)})
    simulator.set_variable("painting_batch_size", "4")
    dag = fast_retries(simulator.dag())

    runs = [simulator.run(dag=dag) for _ in range(5)]

    tries = [
        ti.try_number
        for run in runs
        for ti in run.get_task_instances()
        if ti.task_id == "call_model_service"
    ]
    assert max(tries) > 1, f"no task retry happened: {tries}"
    records = [r for rs in simulator.ledgers().values() for r in rs]
    keys = Counter((r["run_id"], r["source"]["blob"], r["source"]["row"]) for r in records)
    assert max(keys.values()) == 1  # nothing recorded twice
    for run in runs:
        if run.state == "success":
            assert len(all_keys(simulator, run.run_id)) == 4  # the whole window, once
        else:
            assert all_keys(simulator, run.run_id) == []
    assert any(run.state == "success" for run in runs)
    for record in records:
        assert record["candidate"]["kind"] in ("normal", "anomaly")  # the candidate answered
