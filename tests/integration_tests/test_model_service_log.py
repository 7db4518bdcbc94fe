"""The model service's log (``.local/logs/model-service.log`` under ``make run``) shows its start
and every request; ``--no-access-log`` (the benchmark) keeps the start lines only."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from scripts import local_services

pytestmark = pytest.mark.integration

NORMAL_ROW = {
    "machineId": "PAINT-1",
    "timeStamp": "2024-01-01T00:00:00",
    "thick": 20.0,
    "voltage": 250.0,
    "current": 60.0,
    "temper": 35.0,
}


def post_predict(port: int) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict/",
        json.dumps(NORMAL_ROW).encode(),
        {"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def log_after_a_moment(log: Path, line: str, timeout: float) -> str:
    """The log once it holds ``line`` (the service writes each line at once), or after timeout."""
    deadline = time.monotonic() + timeout
    while line not in (text := log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return text


@pytest.mark.parametrize("access_log", [True, False])
def test_the_log_shows_the_start_and_the_requests(tmp_path: Path, access_log: bool) -> None:
    port, log = local_services.free_port(), tmp_path / "model-service.log"
    args = [] if access_log else ["--no-access-log"]
    with local_services.model_service(port, log, extra_args=args):
        status = post_predict(port)
        request_line = f'"POST /predict/ HTTP/1.1" {status}'
        # Read while the service runs: nothing may wait in a buffer.
        text = log_after_a_moment(log, request_line, timeout=5 if access_log else 1)
    assert f"Uvicorn running on http://127.0.0.1:{port}" in text
    assert "Application startup complete" in text
    assert (request_line in text) is access_log, text
