"""check_model_service_connection, run with dag.test() against the real reference model service.

Failure causes are produced for real: a service that was stopped, a port where nothing listens,
a base URL with an extra path (404), a service without a model (500 on /predict/). Answers the
reference service cannot be made to give — an unhealthy /health, a /predict/ that breaks the
contract or is missing, a service that never answers — come from tiny real HTTP servers
(conftest.py), not mocks.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration

DAG_ID = "check_model_service_connection"
SENSOR, PROBE = "wait_for_healthy_service", "probe_prediction"
POKE, TIMEOUT = 1, 3
FAST = {"poke_interval_seconds": POKE, "timeout_seconds": TIMEOUT}
HEALTHY = (200, json.dumps({"status": "healthy", "timestamp": "2026-01-01T00:00:00Z"}))


def assert_failed_at_once(result, task_id: str) -> None:
    assert result.state == "failed"
    assert result.task_states()[task_id] == "failed"
    assert result.reschedules(SENSOR) == []  # no waiting: the first poke decided


def assert_failed_at_the_timeout(result) -> None:
    assert result.state == "failed"
    assert result.task_states() == {SENSOR: "failed", PROBE: "upstream_failed"}
    assert 1 <= len(result.reschedules(SENSOR)) <= TIMEOUT / POKE + 1
    assert f"(still so at the timeout of {TIMEOUT} s)" in result.log


def test_a_healthy_service_passes_the_probe_with_latency_and_answer(
    checks, model_service, use_model_service
):
    use_model_service(model_service.port)

    result = checks.run(DAG_ID, **FAST)

    assert result.state == "success", result.log[-3000:]
    assert result.reschedules(SENSOR) == []
    url = f"http://127.0.0.1:{model_service.port}/predict/"
    assert "sending the probe row" in result.log
    assert '"machineId": "PAINT-CONNECTION-CHECK"' in result.log
    assert f"POST {url} answered 204 in " in result.log
    assert " ms: normal (no content), as expected for the probe" in result.log


def test_a_well_formed_anomaly_record_keeps_the_contract_with_a_warning(
    checks, answering_server, use_model_service
):
    record = {"machineId": "PAINT-CONNECTION-CHECK", "issue": "PAINT-EQ-MCH", "isSolved": False}
    use_model_service(
        answering_server(
            {("GET", "/health"): HEALTHY, ("POST", "/predict/"): (200, json.dumps(record))}
        )
    )

    result = checks.run(DAG_ID, **FAST)

    assert result.state == "success", result.log[-3000:]
    assert "an anomaly record, which keeps the contract" in result.log
    assert "the known-normal probe was judged an anomaly (PAINT-EQ-MCH)" in result.log


def test_a_stopped_service_is_refused_at_the_timeout(
    checks, start_model_service, use_model_service
):
    stopped = start_model_service()
    stopped.stop()
    use_model_service(stopped.port)

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_the_timeout(result)
    assert (
        f"model service refused the connection at http://127.0.0.1:{stopped.port} "
        f"(connection 'painting_model_service')"
    ) in result.log


def test_a_wrong_port_is_refused(checks, closed_port, use_model_service):
    use_model_service(closed_port)

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_the_timeout(result)
    assert f"model service refused the connection at http://127.0.0.1:{closed_port}" in result.log


def test_a_service_that_never_answers_times_out(
    checks, silent_port, use_model_service, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_VAR_PAINTING_REQUEST_TIMEOUT_SECONDS", "1")
    use_model_service(silent_port)

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_the_timeout(result)
    assert f"model service timed out at http://127.0.0.1:{silent_port}" in result.log
    assert "no answer within 1 s" in result.log


def test_a_base_url_with_an_extra_path_is_a_wrong_url_at_once(
    checks, model_service, use_model_service
):
    base = f"http://127.0.0.1:{model_service.port}/v1"
    use_model_service(base_url=base)

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_once(result, SENSOR)
    assert f"wrong URL: GET {base}/health answered 404 Not Found" in result.log


def test_a_missing_predict_endpoint_is_a_wrong_url(checks, answering_server, use_model_service):
    port = answering_server({("GET", "/health"): HEALTHY})  # everything else answers 404

    use_model_service(port)
    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_once(result, PROBE)
    assert f"wrong URL: POST http://127.0.0.1:{port}/predict/ answered 404 Not Found" in result.log


def test_an_unhealthy_answer_fails_at_the_timeout(checks, answering_server, use_model_service):
    unhealthy = json.dumps({"status": "unhealthy", "detail": "model loading"})
    port = answering_server({("GET", "/health"): (503, unhealthy)})
    use_model_service(port)

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_the_timeout(result)
    assert f"model service unhealthy: GET http://127.0.0.1:{port}/health answered 503" in result.log
    assert '"model loading"' in result.log


def test_a_200_that_is_not_a_record_is_a_contract_violation(
    checks, answering_server, use_model_service
):
    port = answering_server(
        {("GET", "/health"): HEALTHY, ("POST", "/predict/"): (200, '{"result": "ok"}')}
    )
    use_model_service(port)

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_once(result, PROBE)
    assert result.task_states()[SENSOR] == "success"
    assert f"contract violation: POST http://127.0.0.1:{port}/predict/ answered 200" in result.log
    assert "200 answer is not an anomaly record (no 'issue')" in result.log


def test_a_service_without_a_model_fails_the_probe_with_its_500(
    checks, start_model_service, use_model_service
):
    # The reference service without a model is alive (/health is healthy) but cannot judge.
    service = start_model_service(model=False)
    use_model_service(service.port)

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_once(result, PROBE)
    assert f"POST http://127.0.0.1:{service.port}/predict/ answered 500" in result.log
    assert "Model not loaded" in result.log


def test_an_undefined_connection_fails_at_once_saying_where_to_define_it(checks, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_PAINTING_MODEL_SERVICE", raising=False)

    result = checks.run(DAG_ID, **FAST)

    assert_failed_at_once(result, SENSOR)
    assert "connection 'painting_model_service' is not defined" in result.log
    assert "AIRFLOW_CONN_PAINTING_MODEL_SERVICE" in result.log
