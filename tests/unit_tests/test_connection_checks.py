"""What the connection checks conclude (include/painting_simulator/checks/).

Exceptions are the real ones: Azure SDK exception classes, and requests failing against a real
local socket (a closed port, a port that never answers), so the cause chain is what the checks
see in a task.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from include.painting_simulator.checks import model_service, sensor_base, storage
from include.painting_simulator.model_client import HttpAnswer
from scripts.local_services import free_port
from tests.support.contract_examples import FLAT_RECORD

CONN, CONTAINER, PREFIX = "painting_blob_storage", "simulator-data", "painting-process-equipment/"
MODEL = "painting_model_service"
URL = "http://127.0.0.1:8001/predict/"


# --- timing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("3", 3.0), (" 2.5 ", 2.5), (10, 10.0)])
def test_seconds_from_a_rendered_template_or_a_number(value: Any, expected: float) -> None:
    assert sensor_base.seconds("timeout", value) == expected


@pytest.mark.parametrize("value", ["soon", "", "inf", "-1", None])
def test_seconds_that_are_not_seconds_name_the_field(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^timeout="):
        sensor_base.seconds("timeout", value)


def test_templates_of_params_and_variables() -> None:
    assert sensor_base.param_template("timeout_seconds") == "{{ params.timeout_seconds }}"
    assert (
        sensor_base.variable_template("painting_container", "simulator-data")
        == "{{ var.value.get('painting_container', 'simulator-data') }}"
    )


# --- the sensor mixin, on a real (provider-free) sensor ---------------------------------------


def _sensor(outcomes: list[Any], **kwargs: Any) -> Any:
    """A real Airflow sensor with the mixin; its base's poke returns or raises ``outcomes``."""
    from airflow.sdk import BaseSensorOperator

    class Scripted(BaseSensorOperator):
        def poke(self, context: Any) -> bool:
            outcome = outcomes.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

    class CheckSensor(sensor_base.CheckSensorMixin, Scripted):
        template_fields = sensor_base.TIMING_FIELDS

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)

        def explain(self, exc: BaseException) -> sensor_base.CheckFailed:
            return sensor_base.CheckFailed(f"explained {exc}", wait=isinstance(exc, OSError))

        def not_yet(self) -> str:
            return "nothing there yet"

    return CheckSensor(
        task_id="check",
        timeout=kwargs.pop("timeout", sensor_base.param_template(sensor_base.PARAM_TIMEOUT)),
        poke_interval=kwargs.pop(
            "poke_interval", sensor_base.param_template(sensor_base.PARAM_POKE_INTERVAL)
        ),
        **kwargs,
    )


def test_timeout_and_poke_interval_are_rendered_from_the_params() -> None:
    sensor = _sensor([])
    # BaseSensorOperator alone neither templates these fields nor accepts text for them.
    assert sensor.timeout == "{{ params.timeout_seconds }}"

    sensor.render_template_fields({"params": {"timeout_seconds": 7, "poke_interval_seconds": 2}})

    assert (sensor.timeout, sensor.poke_interval) == (7.0, 2.0)


def test_a_param_that_is_not_seconds_fails_rendering_naming_the_field() -> None:
    sensor = _sensor([])
    with pytest.raises(ValueError, match="poke_interval='0' must be"):
        sensor.render_template_fields(
            {"params": {"timeout_seconds": 7, "poke_interval_seconds": 0}}
        )


def test_a_cause_that_waiting_cannot_fix_fails_at_once_without_retry() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    sensor = _sensor([sensor_base.CheckFailed("wrong URL: 404")], timeout=5, poke_interval=1)
    with pytest.raises(AirflowFailException, match=r"^wrong URL: 404$"):
        sensor.poke({})


def test_a_passing_cause_is_kept_and_the_sensor_pokes_again() -> None:
    sensor = _sensor([sensor_base.CheckFailed("unhealthy", wait=True), False, OSError("refused")])
    sensor.timeout, sensor.poke_interval = 5.0, 1.0

    assert sensor.poke({}) is False
    assert sensor.last_cause == "unhealthy"
    assert sensor.poke({}) is False
    assert sensor.last_cause == "nothing there yet"
    assert sensor.poke({}) is False
    assert sensor.last_cause == "explained refused"


def test_at_the_timeout_the_failure_names_the_last_cause() -> None:
    from airflow.sdk.exceptions import AirflowSensorTimeout

    sensor = _sensor([False], timeout=0, poke_interval=1)
    with pytest.raises(AirflowSensorTimeout) as failure:
        sensor.execute({})
    assert str(failure.value) == "nothing there yet (still so at the timeout of 0 s)"


# --- storage --------------------------------------------------------------------------------


def test_storage_requests_make_one_attempt_and_wait_no_longer_than_the_check() -> None:
    assert storage.storage_request_options() == {
        "retry_total": 0,
        "connection_timeout": 10.0,
        "read_timeout": 30.0,
    }
    assert storage.storage_request_options(limit=3) == {
        "retry_total": 0,
        "connection_timeout": 3.0,
        "read_timeout": 3.0,
    }
    assert storage.storage_request_options(limit=0)["connection_timeout"] == 1.0


def test_storage_endpoint_drops_a_sas_query() -> None:
    url = "https://acct.blob.core.windows.net/?sv=2024&sig=SECRET"
    assert storage.storage_endpoint(url) == "https://acct.blob.core.windows.net"
    assert (
        storage.storage_endpoint("http://127.0.0.1:10000/devstoreaccount1/")
        == "http://127.0.0.1:10000/devstoreaccount1"
    )


def test_unreachable_storage_is_worth_waiting_for_and_names_the_endpoint() -> None:
    from azure.core.exceptions import ServiceRequestError

    exc = ServiceRequestError("HTTPConnection(host='127.0.0.1', port=1): Connection refused")
    failure = storage.storage_failure(exc, CONTAINER, PREFIX, CONN, "http://127.0.0.1:1/acct")
    assert failure.wait
    assert str(failure).startswith("storage unreachable (connection 'painting_blob_storage')")
    assert "is the storage service running at http://127.0.0.1:1/acct" in str(failure)


def test_a_storage_timeout_is_worth_waiting_for() -> None:
    from azure.core.exceptions import ServiceResponseError

    failure = storage.storage_failure(
        ServiceResponseError("read timed out"), CONTAINER, PREFIX, CONN, None
    )
    assert failure.wait
    assert "did not answer in time" in str(failure)


def test_wrong_credentials_fail_at_once() -> None:
    from azure.core.exceptions import ClientAuthenticationError

    exc = ClientAuthenticationError("Server failed to authenticate the request.")
    failure = storage.storage_failure(exc, CONTAINER, PREFIX, CONN, "http://h:1/a")
    assert not failure.wait
    assert str(failure).startswith("storage authentication failed (connection")
    assert str(failure).endswith("; endpoint http://h:1/a")


def test_a_missing_container_fails_at_once_and_says_how_to_fix_it() -> None:
    from azure.core.exceptions import ResourceNotFoundError

    exc = ResourceNotFoundError("The specified container does not exist.")
    failure = storage.storage_failure(exc, CONTAINER, PREFIX, CONN, None)
    assert not failure.wait
    assert str(failure) == (
        "container 'simulator-data' not found (connection 'painting_blob_storage') — create it, "
        "or set the Variable painting_container"
    )


def test_a_malformed_connection_string_names_the_connection() -> None:
    failure = storage.storage_failure(
        ValueError("Connection string is either blank or malformed."), CONTAINER, PREFIX, CONN, None
    )
    assert not failure.wait
    assert "connection 'painting_blob_storage' is not a usable storage connection" in str(failure)


def test_an_undefined_connection_says_where_to_define_it() -> None:
    from airflow.sdk.exceptions import AirflowNotFoundException

    exc = AirflowNotFoundException("The conn_id `painting_blob_storage` isn't defined")
    failure = storage.storage_failure(exc, CONTAINER, PREFIX, CONN, None)
    assert not failure.wait
    assert str(failure) == (
        "connection 'painting_blob_storage' is not defined: add it in Admin → Connections, or as "
        "the environment variable AIRFLOW_CONN_PAINTING_BLOB_STORAGE"
    )
    assert sensor_base.missing_connection(ValueError("other"), CONN) is None


def _blob(name: str, size: int = 10) -> storage.BlobInfo:
    return storage.BlobInfo(name, size, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))


def test_the_summary_counts_csvs_and_shows_the_first_five_by_name() -> None:
    names = [f"{PREFIX}{c}.csv" for c in "gfedcba"] + [f"{PREFIX}notes.txt"]
    csvs, lines = storage.summarize_csv_blobs(map(_blob, names), CONTAINER, PREFIX, CONN)

    assert [b.name for b in csvs] == sorted(names[:7])
    assert lines[0] == (
        "7 CSV blob(s) under prefix 'painting-process-equipment/' in container 'simulator-data' "
        "(connection 'painting_blob_storage'); the first 5 by name:"
    )
    assert lines[1] == (f"  {PREFIX}a.csv  10 bytes  last modified 2026-01-02T03:04:05+00:00")
    assert len(lines) == 6
    assert "f.csv" not in "".join(lines)

    _, lines = storage.summarize_csv_blobs(map(_blob, names[5:]), CONTAINER, PREFIX, CONN)
    assert lines[0].endswith("; all by name:")
    assert len(lines) == 3


def test_no_csv_under_the_prefix_names_what_is_there() -> None:
    with pytest.raises(
        sensor_base.CheckFailed, match=r"2 other blob\(s\) \(p/a.txt, p/b.bak\)"
    ) as f:
        storage.summarize_csv_blobs([_blob("p/b.bak"), _blob("p/a.txt")], CONTAINER, "p/", CONN)
    assert str(f.value).startswith("no CSV under prefix 'p/' in container 'simulator-data'")
    assert not f.value.wait


def test_an_empty_prefix_says_no_csv_and_how_to_fix_it() -> None:
    text = storage.no_blobs(CONTAINER, PREFIX, CONN)
    assert text.startswith("no CSV under prefix 'painting-process-equipment/'")
    assert "set the Variable painting_prefix" in text


# --- model service: no answer ---------------------------------------------------------------


def _requests_failure(port: int, timeout: float = 2) -> requests.RequestException:
    try:
        requests.get(f"http://127.0.0.1:{port}/health", timeout=timeout)
    except requests.RequestException as exc:
        return exc
    raise AssertionError("the request should have failed")


def test_a_refused_connection_is_named_refused() -> None:
    failure = model_service.transport_failure(
        _requests_failure(free_port()), "http://127.0.0.1:9", MODEL, 30
    )
    assert failure.wait
    assert str(failure).startswith(
        "model service refused the connection at http://127.0.0.1:9 "
        "(connection 'painting_model_service')"
    )


def test_a_service_that_never_answers_is_named_timed_out() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        exc = _requests_failure(silent.getsockname()[1], timeout=0.2)
    failure = model_service.transport_failure(exc, "http://127.0.0.1:9", MODEL, 0.2)
    assert failure.wait
    assert str(failure).startswith("model service timed out at http://127.0.0.1:9")
    assert "no answer within 0.2 s" in str(failure)


def test_a_wrapped_transport_error_is_still_recognised() -> None:
    from include.painting_simulator.model_client import TransportError

    try:
        raise TransportError("ConnectionError on POST") from _requests_failure(free_port())
    except TransportError as exc:
        failure = model_service.transport_failure(exc, "http://h:1", MODEL, 30)
    assert "refused the connection" in str(failure)


# --- model service: /health -----------------------------------------------------------------


def test_only_200_healthy_is_healthy() -> None:
    body = json.dumps({"status": "healthy", "timestamp": "2026-01-01T00:00:00Z"})
    assert model_service.judge_health(200, body, "http://h/health", MODEL) is True


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (503, '{"status": "unhealthy"}'),
        (200, '{"status": "degraded"}'),
        (200, "OK"),
        (500, "Internal Server Error"),
    ],
)
def test_anything_else_is_unhealthy_and_worth_waiting_for(status: int, text: str) -> None:
    with pytest.raises(sensor_base.CheckFailed) as failure:
        model_service.judge_health(status, text, "http://h/health", MODEL)
    assert failure.value.wait
    assert str(failure.value).startswith(
        f"model service unhealthy: GET http://h/health answered {status}"
    )


def test_404_on_health_is_a_wrong_url_at_once() -> None:
    with pytest.raises(sensor_base.CheckFailed) as failure:
        model_service.judge_health(404, '{"detail": "Not Found"}', "http://h/v1/health", MODEL)
    assert not failure.value.wait
    assert str(failure.value).startswith("wrong URL: GET http://h/v1/health answered 404 Not Found")


@pytest.mark.parametrize("status", [401, 403])
def test_refused_access_fails_at_once(status: int) -> None:
    with pytest.raises(sensor_base.CheckFailed, match="refused access") as failure:
        model_service.judge_health(status, "", "http://h/health", MODEL)
    assert not failure.value.wait


# --- model service: the probe ---------------------------------------------------------------


def test_the_probe_is_a_typical_reading_through_the_simulators_mapping() -> None:
    body = model_service.probe_body(datetime(2026, 11, 26, 10, 0, 5, tzinfo=UTC))
    assert body == {
        "machineId": "PAINT-CONNECTION-CHECK",
        "timeStamp": "2026-11-26T10:00:05",
        "thick": 19.89,
        "voltage": 258.4,
        "current": 68.9,
        "temper": 34.4,
        "issue": "",
        "isSolved": False,
    }


def test_204_is_the_expected_answer() -> None:
    result = model_service.judge_probe(HttpAnswer(204, ""), URL, MODEL, 3.21)
    assert result.kind == "normal"
    assert result.warning is None
    assert result.lines == [
        f"POST {URL} answered 204 in 3.2 ms: normal (no content), as expected for the probe"
    ]


@pytest.mark.parametrize("body", [FLAT_RECORD, {"predictions": [FLAT_RECORD]}])
def test_a_200_record_keeps_the_contract_with_a_warning(body: dict[str, Any]) -> None:
    result = model_service.judge_probe(HttpAnswer(200, json.dumps(body)), URL, MODEL, 1.0)
    assert result.kind == "anomaly"
    assert "PAINT-EQ-VOL-HIGH" in result.warning
    assert '"issue": "PAINT-EQ-VOL-HIGH"' in result.lines[0]


@pytest.mark.parametrize(
    ("status", "text", "expected"),
    [
        (200, '{"result": "ok"}', "200 answer is not an anomaly record (no 'issue')"),
        (200, "OK", "200 answer is not JSON: OK"),
        (200, '{"predictions": "none"}', "'predictions' is not a list"),
        (422, '{"detail": [{"loc": ["body", "thick"]}]}', "model service rejected the row (422)"),
    ],
)
def test_answers_that_break_the_contract_are_violations(
    status: int, text: str, expected: str
) -> None:
    with pytest.raises(sensor_base.CheckFailed) as failure:
        model_service.judge_probe(HttpAnswer(status, text), URL, MODEL, 1.0)
    assert str(failure.value).startswith(
        f"contract violation: POST {URL} answered {status} in 1.0 ms"
    )
    assert expected in str(failure.value)


def test_a_server_error_is_named_with_the_services_message() -> None:
    with pytest.raises(sensor_base.CheckFailed) as failure:
        model_service.judge_probe(
            HttpAnswer(500, '{"detail": "Model not loaded"}'), URL, MODEL, 1.0
        )
    assert str(failure.value) == (
        f'POST {URL} answered 500 in 1.0 ms: model service failed (500): "Model not loaded" '
        "(connection 'painting_model_service')"
    )


def test_404_on_predict_is_a_wrong_url() -> None:
    with pytest.raises(sensor_base.CheckFailed, match=f"^wrong URL: POST {URL} answered 404"):
        model_service.judge_probe(HttpAnswer(404, '{"detail": "Not Found"}'), URL, MODEL, 1.0)
