"""Each fault kind of the reference model service, as the simulator's real HTTP transport sees it.

The service runs as a subprocess with ``--fault-rate 1 --fault-mix <kind>``; the calls go through
``model_client.hook_transport`` on Airflow's ``HttpHook`` (what the DAG uses), and the answers
are classified by ``model_client`` like in a run.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from include.painting_simulator import model_client, settings
from tests.support.connections import http_connection
from tests.support.contract_examples import BODY

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT = 1.0


def post_once(service, monkeypatch) -> model_client.CallResult:
    from airflow.providers.http.hooks.http import HttpHook

    monkeypatch.setenv("AIRFLOW_CONN_PAINTING_MODEL_SERVICE", http_connection(service.port))
    hook = HttpHook(method="POST", http_conn_id=settings.MODEL_CONN_ID)
    post = model_client.hook_transport(hook, settings.PREDICT_ENDPOINT, CLIENT_TIMEOUT)
    return model_client.send_with_retries(post, BODY, attempts=1)


def fault_stats(service) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/faults", timeout=5) as answer:
        return json.load(answer)


@pytest.mark.parametrize(
    ("kind", "status", "cause"),
    [
        ("500", 500, 'model service failed (500): "injected fault: internal error"'),
        ("503", 503, 'model service failed (503): "injected fault: service unavailable"'),
        ("slow", None, "model service unreachable: ReadTimeout on POST"),
        ("drop", None, "model service unreachable: ConnectionError on POST"),
        ("badjson", 200, '200 answer is not JSON: {"machineId"'),
        ("empty", 200, "200 answer is not JSON: an empty body"),
        ("noissue", 200, "200 answer is not an anomaly record (no 'issue')"),
    ],
)
def test_every_fault_kind_reaches_the_client_as_intended(
    start_model_service, monkeypatch, kind, status, cause
):
    service = start_model_service("--fault-rate", "1", "--fault-mix", kind, "--slow-seconds", "3")

    call = post_once(service, monkeypatch)

    assert call.outcome.kind == settings.ERROR
    assert call.outcome.status == status
    assert cause in call.outcome.error
    assert call.reached is (status is not None)  # slow and drop: no answer at all
    stats = fault_stats(service)
    assert stats["calls"] == 1
    assert stats["injected"][kind] == stats["injected_total"] == 1


def test_a_503_carries_retry_after_and_a_drop_sends_not_a_single_byte(start_model_service):
    import socket

    service = start_model_service("--fault-rate", "1", "--fault-mix", "503", "--retry-after", "7")
    request = urllib.request.Request(
        f"http://127.0.0.1:{service.port}/predict/",
        json.dumps(BODY).encode(),
        {"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=5)
    assert answer.value.code == 503
    assert answer.value.headers["Retry-After"] == "7"

    dropping = start_model_service("--fault-rate", "1", "--fault-mix", "drop")
    body = json.dumps(BODY).encode()
    with socket.create_connection(("127.0.0.1", dropping.port), timeout=5) as sock:
        sock.sendall(
            b"POST /predict/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert sock.recv(1024) == b""  # closed by the server: end of stream, no answer


def test_without_fault_options_the_service_keeps_its_contract(model_service, monkeypatch):
    call = post_once(model_service, monkeypatch)

    assert call.outcome.kind == settings.NORMAL  # the contract example is a normal row
    with pytest.raises(urllib.error.HTTPError) as answer:
        fault_stats(model_service)
    assert answer.value.code == 404  # no /faults endpoint when fault injection is off
