"""Driving a running Airflow through its REST API v2, like a user in the UI.

Shared by the tests that run a real Airflow (the e2e tests, the SIGKILL reliability test). The
class using :class:`AirflowApi` provides ``base_url``, ``home`` (its AIRFLOW_HOME, where the
simple auth manager keeps the generated passwords), ``running`` and ``log_tail()``.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DAG_ID = "painting_simulator"


class AirflowApi:
    base_url: str
    home: Path
    running: bool  # provided by the class using this, like log_tail()
    token: str | None = None

    def wait_for(self, what: str, condition: Callable[[], Any], timeout: float) -> Any:
        """Poll ``condition`` until it returns something truthy; fail with the log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                pytest.fail(f"Airflow exited while waiting for {what}:\n{self.log_tail()}")
            result = condition()
            if result:
                return result
            time.sleep(1)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}:\n{self.log_tail()}")

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data, headers, method=method)
        # Generous: on a loaded machine the api-server can take seconds to answer.
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def try_request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The answer, or None while the server is not there yet (connection refused, 404...)."""
        try:
            return self.request(method, path, body)
        except (OSError, ValueError):  # urllib.error.URLError/HTTPError are OSErrors
            return None

    def log_in(self) -> None:
        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        password = json.loads(passwords.read_text())["admin"]
        answer = self.request("POST", "/auth/token", {"username": "admin", "password": password})
        self.token = answer["access_token"]

    def dag(self, dag_id: str = DAG_ID) -> dict[str, Any] | None:
        return self.try_request("GET", f"/api/v2/dags/{dag_id}")

    def set_paused(self, paused: bool, dag_id: str = DAG_ID) -> None:
        answer = self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})
        assert answer["is_paused"] is paused

    def task_log(self, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The task's log as the UI's log viewer shows it (served by the api-server)."""
        path = (
            f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id)}"
            f"/taskInstances/{task_id}/logs/{try_number}"
        )
        answer = self.request("GET", path)
        # Structured log lines: {"event": "...", "timestamp": ..., "level": ...}
        return "\n".join(
            str(line.get("event", "")) if isinstance(line, dict) else str(line)
            for line in answer["content"]
        )

    def runs(self, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
