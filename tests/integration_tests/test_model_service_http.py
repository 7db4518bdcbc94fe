"""Integration tests of the reference model service over real HTTP (service run as a subprocess)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CSV = REPO_ROOT / "include" / "sample_data" / "painting_sample.csv"
START_TIMEOUT_S = 20.0

NORMAL = {
    "machineId": "PAINT-1",
    "timeStamp": "2025-07-23T15:32:01",
    "thick": 19.9,
    "voltage": 260.0,
    "current": 70.0,
    "temper": 34.0,
    "issue": "",
    "isSolved": False,
}
# Typical inputs, thickness 40 % above the law -> machine issue.
ANOMALY = {**NORMAL, "thick": 28.0}

StartService = Callable[..., str]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def start_service() -> Iterator[StartService]:
    """Factory: start ``python -m include.model_service <args>`` on a free port, return its URL.

    Every process started is stopped by PID when the module's tests are done.
    """
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> str:
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "include.model_service", "--port", str(port), *args],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                pytest.fail(f"model service exited with {proc.returncode}: {err}")
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    return url
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        pytest.fail(f"model service did not answer /health within {START_TIMEOUT_S} s")

    yield start
    for proc in procs:
        _stop(proc)


@pytest.fixture(scope="module")
def issue_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model_service") / "logs" / "issue_logs.jsonl"


@pytest.fixture(scope="module")
def service(start_service: StartService, issue_log: Path) -> str:
    """The default service (flat anomaly body, sample-fitted model), logging issues."""
    return start_service("--data", str(SAMPLE_CSV), "--issue-log", str(issue_log))


def test_normal_row_gives_204_without_body(service: str) -> None:
    resp = requests.post(f"{service}/predict/", json=NORMAL, timeout=5)
    assert resp.status_code == 204
    assert resp.content == b""


def test_anomaly_gives_200_flat_record(service: str) -> None:
    resp = requests.post(f"{service}/predict/", json=ANOMALY, timeout=5)
    assert resp.status_code == 200
    assert resp.json() == {**ANOMALY, "issue": "PAINT-EQ-MCH", "isSolved": False}


def test_timestamp_is_echoed_exactly(service: str) -> None:
    # A form pydantic accepts but would re-serialise differently as a datetime.
    body = {**ANOMALY, "timeStamp": "2025-07-23 15:32:01.5"}
    resp = requests.post(f"{service}/predict/", json=body, timeout=5)
    assert resp.status_code == 200
    assert resp.json()["timeStamp"] == "2025-07-23 15:32:01.5"


@pytest.mark.parametrize(
    ("change", "expected_issue"),
    [
        ({"voltage": 400.0, "temper": 50.0}, "PAINT-EQ-VOL-INVALID"),
        ({"current": 2.0}, "PAINT-EQ-CUR-INVALID"),
        ({"temper": 41.0}, "PAINT-EQ-TEM-INVALID"),
        ({"voltage": 330.0, "thick": 30.0}, "PAINT-EQ-VOL-HIGH"),
        ({"temper": 27.0, "thick": 12.0}, "PAINT-EQ-TEM-LOW"),
    ],
)
def test_issue_codes_over_http(service: str, change: dict[str, float], expected_issue: str) -> None:
    resp = requests.post(f"{service}/predict/", json={**NORMAL, **change}, timeout=5)
    assert resp.status_code == 200
    assert resp.json()["issue"] == expected_issue
    assert resp.json()["isSolved"] is False


def test_defaults_for_issue_and_is_solved(service: str) -> None:
    body = {k: v for k, v in ANOMALY.items() if k not in ("issue", "isSolved")}
    resp = requests.post(f"{service}/predict/", json=body, timeout=5)
    assert resp.status_code == 200
    assert resp.json()["isSolved"] is False


@pytest.mark.parametrize(
    "body",
    [
        {**NORMAL, "voltage": "abc"},
        {**NORMAL, "timeStamp": "not a time"},
        {k: v for k, v in NORMAL.items() if k != "thick"},
    ],
    ids=["non-numeric-voltage", "unparsable-timestamp", "missing-thick"],
)
def test_invalid_body_gives_422(service: str, body: dict[str, object]) -> None:
    resp = requests.post(f"{service}/predict/", json=body, timeout=5)
    assert resp.status_code == 422
    assert "detail" in resp.json()


def test_predict_without_slash_redirects(service: str) -> None:
    resp = requests.post(f"{service}/predict", json=ANOMALY, timeout=5, allow_redirects=False)
    assert resp.status_code == 307
    assert resp.headers["location"].endswith("/predict/")


def test_health_ready_startup_root(service: str) -> None:
    health = requests.get(f"{service}/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "healthy"
    assert health.json()["timestamp"][:4].isdigit()
    ready = requests.get(f"{service}/ready", timeout=5)
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert requests.get(f"{service}/startup", timeout=5).status_code == 200
    root = requests.get(f"{service}/", timeout=5).json()
    assert root["service"] == "painting-process-equipment-defect-detection-model-service"
    assert root["version"]
    assert root["description"]


def test_model_info(service: str) -> None:
    info = requests.get(f"{service}/model/info", timeout=5).json()
    assert info["model_version"] == "reference-1"
    assert info["threshold"] == 0.1
    assert info["mch_threshold"] == 2.0
    assert info["features"] == ["voltage", "current", "temper"]
    assert set(info["coefficients"]) == set(info["feature_means"]) == set(info["features"])
    assert info["ranges"]["voltage"] == [20.0, 350.0]
    assert info["training_rows"] > 2000
    assert isinstance(info["intercept"], float)


def test_predict_file(service: str) -> None:
    csv_text = (
        "machineId,timeStamp,Thick,PT_jo_V_1,Extra,PT_jo_A_Main_1,PT_jo_TP\n"
        "1,2025-07-23T08:00:00,19.9,260.0,x,70.0,34.0\n"
        "2,2025-07-23T08:00:10,28.0,260.0,y,70.0,34.0\n"
        "3,2025-07-23T08:00:20,19.9,500.0,z,70.0,34.0\n"
    )
    resp = requests.post(
        f"{service}/predict/file",
        files={"file": ("rows.csv", csv_text.encode(), "text/csv")},
        timeout=5,
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["filename"] == "rows.csv"
    assert [(p["machineId"], p["issue"]) for p in body["predictions"]] == [
        ("PAINT-2", "PAINT-EQ-MCH"),
        ("PAINT-3", "PAINT-EQ-VOL-INVALID"),
    ]


def test_issue_log_lines_written(service: str, issue_log: Path) -> None:
    marker = {**ANOMALY, "machineId": "PAINT-LOGCHECK"}
    assert requests.post(f"{service}/predict/", json=marker, timeout=5).status_code == 200
    assert requests.post(f"{service}/predict/", json=NORMAL, timeout=5).status_code == 204
    lines = [json.loads(line) for line in issue_log.read_text(encoding="utf-8").splitlines()]
    assert {**marker, "issue": "PAINT-EQ-MCH", "isSolved": False} in lines
    assert all(line["issue"] for line in lines)  # normal rows are never logged


def test_no_model_gives_500(start_service: StartService) -> None:
    url = start_service("--no-model")
    resp = requests.post(f"{url}/predict/", json=NORMAL, timeout=5)
    assert resp.status_code == 500
    assert resp.json() == {"detail": "Model not loaded"}
    assert requests.get(f"{url}/ready", timeout=5).status_code == 503
    assert requests.get(f"{url}/health", timeout=5).status_code == 200
    # Validation still comes first.
    assert requests.post(f"{url}/predict/", json={}, timeout=5).status_code == 422


def test_missing_data_file_gives_500(start_service: StartService, tmp_path: Path) -> None:
    url = start_service("--data", str(tmp_path / "absent.csv"))
    assert requests.post(f"{url}/predict/", json=NORMAL, timeout=5).status_code == 500


def test_predictions_body_switch(start_service: StartService) -> None:
    url = start_service("--anomaly-body", "predictions")
    resp = requests.post(f"{url}/predict/", json=ANOMALY, timeout=5)
    assert resp.status_code == 200
    assert resp.json() == {"predictions": [{**ANOMALY, "issue": "PAINT-EQ-MCH", "isSolved": False}]}
    assert requests.post(f"{url}/predict/", json=NORMAL, timeout=5).status_code == 204


def test_a_candidate_version_answers_differently_on_a_known_row(
    service: str, start_service: StartService
) -> None:
    """Two real services, the reference and a candidate with a 5 % tolerance (and two uvicorn
    workers, so the settings travel through the environment): a row 7 % thick is normal for
    one and an anomaly for the other."""
    candidate = start_service(
        "--model-version", "candidate-2", "--threshold", "0.05", "--workers", "2"
    )
    info = requests.get(f"{candidate}/model/info", timeout=5).json()
    assert (info["model_version"], info["threshold"], info["mch_threshold"]) == (
        "candidate-2",
        0.05,
        2.0,
    )
    seven_percent = {**NORMAL, "thick": 19.9 * 1.07}
    assert requests.post(f"{service}/predict/", json=seven_percent, timeout=5).status_code == 204
    answer = requests.post(f"{candidate}/predict/", json=seven_percent, timeout=5)
    assert answer.status_code == 200
    assert answer.json()["issue"] == "PAINT-EQ-MCH"


def test_impossible_version_settings_stop_the_service_at_once() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "include.model_service", "--threshold", "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "threshold must be greater than 0, not 0.0" in done.stderr
