"""The replay's HTTP/1.1 client against the real reference model service (a subprocess).

Every answer of the contract, and each fault the service can be made to inject, reaches the
replay's sender as the contract says (``docs/model-service-contract.md``); many rows share a
few keep-alive connections.
"""

from __future__ import annotations

import asyncio

import pytest

from include.painting_simulator import settings
from include.painting_simulator.replay import http1, sender
from tests.support.contract_examples import BODY

pytestmark = pytest.mark.integration

URL = "http://127.0.0.1:{port}" + settings.PREDICT_ENDPOINT
TYPICAL = {**BODY, "voltage": 260.0, "current": 70.0, "thick": 19.9}  # normal for the sample


def send_all(port: int, bodies: list[dict], *, timeout: float = 10.0, limit: int = 4):
    """Each body through the replay sender's retry loop, one attempt, ``limit`` at a time."""

    async def main():
        async with http1.Client(URL.format(port=port), limit=limit, timeout=timeout) as client:
            return await asyncio.gather(
                *(sender.send_with_retries(client, sender.encode_body(b)[1], 1) for b in bodies)
            )

    return asyncio.run(main())


def test_normal_anomaly_and_invalid_rows_get_the_contracts_verdicts(model_service):
    normal, anomaly, invalid = send_all(
        model_service.port,
        [TYPICAL, {**TYPICAL, "voltage": 400.0}, {**TYPICAL, "timeStamp": "not a time"}],
    )

    assert normal.outcome.kind == settings.NORMAL
    assert anomaly.outcome.kind == settings.ANOMALY
    assert anomaly.outcome.prediction["issue"] == "PAINT-EQ-VOL-INVALID"
    assert invalid.outcome.kind == settings.ERROR
    assert invalid.outcome.status == 422
    assert invalid.outcome.error.startswith("model service rejected the row (422): ")


def test_many_rows_on_a_few_keep_alive_connections(model_service):
    calls = send_all(model_service.port, [TYPICAL] * 400, limit=4)

    assert {call.outcome.kind for call in calls} == {settings.NORMAL}
    assert {call.attempts for call in calls} == {1}


@pytest.mark.parametrize(
    ("kind", "status", "cause"),
    [
        ("503", 503, 'model service failed (503): "injected fault: service unavailable"'),
        ("slow", None, "model service unreachable: TimeoutError on POST http://127.0.0.1:"),
        ("drop", None, "model service unreachable: ServerDisconnectedError on POST http://"),
        ("badjson", 200, '200 answer is not JSON: {"machineId"'),
        ("empty", 200, "200 answer is not JSON: an empty body"),
    ],
)
def test_each_injected_fault_is_the_replays_error(start_model_service, kind, status, cause):
    service = start_model_service("--fault-rate", "1", "--fault-mix", kind, "--slow-seconds", "3")

    (call,) = send_all(service.port, [TYPICAL], timeout=1.0)

    assert call.outcome.kind == settings.ERROR
    assert call.outcome.status == status
    assert call.outcome.error.startswith(cause)
