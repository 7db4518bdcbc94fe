"""``make run`` started twice for real: start, a tick, Ctrl-C during a run, start again, a tick.

``python -m scripts.run_local`` runs in its own state directory (``PAINTING_STATE_DIR``) on free
ports with a 15-second schedule, and is stopped like a user does: SIGINT to its PID. Between the
two starts the DAG is unpaused offline with ``make airflow`` (what a stack killed while running
leaves behind), so the restart finds ``painting_simulator`` unpaused in the metadata DB with a
run due. One scenario (module fixture) records what happened; each test checks one promise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scripts import local_services
from tests.support.dag_runs import read_jsonl
from tests.support.make_targets import json_listing
from tests.support.make_targets import make_airflow as support_make_airflow

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "painting_simulator"
PACKAGE_DAGS = {
    "painting_simulator",
    "painting_replay",
    "painting_alerts",
    "check_azure_storage_connection",
    "check_model_service_connection",
}
READY_LINE = "Ctrl-C stops everything."
CHOSEN_PASSWORD = "chosen-for-the-restart"
START_TIMEOUT, TICK_TIMEOUT, STOP_TIMEOUT = 300, 120, 200


@dataclass
class Start:
    """What one ``make run`` printed and did."""

    began: datetime
    api_answered: datetime | None = None  # first answer of /api/v2/monitor/health
    output: str = ""
    exit_code: int | None = None
    logins: dict[str, int] = field(default_factory=dict)  # password -> HTTP status of /auth/token
    dags_listed: list[dict[str, Any]] = field(default_factory=list)  # `make airflow` while running


@dataclass
class Scenario:
    state_dir: Path
    env: dict[str, str]
    base_url: str
    model_port: int
    candidate_port: int
    starts: list[Start] = field(default_factory=list)
    running_at_stop: list[str] = field(default_factory=list)  # tasks running at the first Ctrl-C
    offline_list: list[dict[str, Any]] = field(default_factory=list)  # `make airflow` while stopped
    task_instances: list[dict[str, Any]] = field(default_factory=list)
    candidate_connection: dict[str, Any] = field(default_factory=dict)  # REST API, while running
    shadow_variable: dict[str, Any] = field(default_factory=dict)
    current: MakeRun | None = None


def post_token(base_url: str, password: str) -> tuple[int, str | None]:
    body = json.dumps({"username": "admin", "password": password}).encode()
    request = urllib.request.Request(
        f"{base_url}/auth/token", body, {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)["access_token"]
    except urllib.error.HTTPError as error:
        return error.code, None


def get(base_url: str, token: str, path: str) -> Any:
    request = urllib.request.Request(base_url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def get_all(base_url: str, token: str, path: str, key: str) -> list[dict[str, Any]]:
    """Every item of a paged list (the api-server answers at most 100 per page)."""
    items: list[dict[str, Any]] = []
    while True:
        page = get(base_url, token, f"{path}?limit=100&offset={len(items)}")[key]
        items += page
        if len(page) < 100:
            return items


def api_answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/api/v2/monitor/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def make_airflow(env: dict[str, str], args: str) -> list[dict[str, Any]]:
    """``make airflow ARGS=...`` with JSON output, parsed ([] if it printed none)."""
    return json_listing(support_make_airflow(env, f"{args} --output json", timeout=120))


class MakeRun:
    """One ``python -m scripts.run_local``, stopped with SIGINT to its PID like Ctrl-C."""

    def __init__(self, scenario: Scenario, extra_env: dict[str, str]) -> None:
        self.scenario = scenario
        self.record = Start(began=datetime.now(UTC))
        self.output_path = scenario.state_dir / f"make-run-{len(scenario.starts) + 1}.out"
        with open(self.output_path, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "scripts.run_local"],
                cwd=REPO,
                env={**scenario.env, **extra_env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        scenario.starts.append(self.record)

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while READY_LINE not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make run did not start:\n{self.output()}\n{self.airflow_log()}")
            if self.record.api_answered is None and api_answers(self.scenario.base_url):
                self.record.api_answered = datetime.now(UTC)
            time.sleep(0.5)
        assert self.record.api_answered is not None

    def airflow_log(self) -> str:
        log = self.scenario.state_dir / ".local" / "logs" / "airflow-standalone.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        return "\n".join(lines[-40:])

    def wait_for_a_successful_run(self, token: str) -> None:
        deadline = time.monotonic() + TICK_TIMEOUT
        while time.monotonic() < deadline:
            runs = get(self.scenario.base_url, token, f"/api/v2/dags/{DAG_ID}/dagRuns?limit=100")
            if any(
                r["state"] == "success" and parse_time(r["start_date"]) > self.record.began
                for r in runs["dag_runs"]
            ):
                return
            time.sleep(1)
        pytest.fail(f"no successful run of {DAG_ID} after this start:\n{self.airflow_log()}")

    def wait_for_a_running_task(self, token: str) -> list[str]:
        """Wait until a task of the DAG runs (to press Ctrl-C in the middle of a run)."""
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/~/taskInstances?state=running"
        deadline = time.monotonic() + TICK_TIMEOUT
        while time.monotonic() < deadline:
            running = get(self.scenario.base_url, token, path)["task_instances"]
            if running:
                return [f"{ti['dag_run_id']}.{ti['task_id']}" for ti in running]
            time.sleep(0.2)
        pytest.fail(f"no task of {DAG_ID} ran:\n{self.airflow_log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.terminate()  # run_local stops its children on SIGTERM as well
                self.process.wait(timeout=60)
        self.record.exit_code = self.process.returncode
        self.record.output = self.output()


def run_and_tick(scenario: Scenario, password: str | None, extra_env: dict[str, str]) -> str:
    """Start make run, log in, wait for a successful run; return a token (make run still runs)."""
    started = MakeRun(scenario, extra_env)
    scenario.current = started
    started.wait_ready()
    password = (
        password
        or json.loads(
            (
                scenario.state_dir / ".airflow" / "simple_auth_manager_passwords.json.generated"
            ).read_text()
        )["admin"]
    )
    status, token = post_token(scenario.base_url, password)
    started.record.logins[password] = status
    assert token, f"login as admin failed ({status}):\n{started.output()}"
    started.wait_for_a_successful_run(token)
    return token


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    state_dir = tmp_path_factory.mktemp("make-run")
    api_port, model_port = local_services.free_port(), local_services.free_port()
    candidate_port = local_services.free_port()
    env = {
        **os.environ,
        "PAINTING_STATE_DIR": str(state_dir),
        "PAINTING_AZURITE_PORT": str(local_services.free_port()),
        "PAINTING_MODEL_PORT": str(model_port),
        "PAINTING_CANDIDATE_PORT": str(candidate_port),
        "PAINTING_AIRFLOW_PORT": str(api_port),
        "PAINTING_INTERVAL_MINUTES": "0.25",
        "AIRFLOW__CORE__PARALLELISM": "4",
        # Airflow's log servers bind every interface: free ports, not a running make run's.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(local_services.free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(local_services.free_port()),
    }
    env.pop("PAINTING_ADMIN_PASSWORD", None)
    env.pop("PAINTING_SHADOW", None)  # the default: shadow mode on
    result = Scenario(state_dir, env, f"http://127.0.0.1:{api_port}", model_port, candidate_port)
    try:
        # First start: the password is generated. Ctrl-C in the middle of a run.
        token = run_and_tick(result, None, {})
        result.running_at_stop = result.current.wait_for_a_running_task(token)
        result.current.stop()
        # Stopped: unpause offline, as a stack killed while running would leave it.
        make_airflow(env, f"dags unpause {DAG_ID}")
        result.offline_list = make_airflow(env, "dags list")
        # Restart, with a chosen password.
        token = run_and_tick(result, CHOSEN_PASSWORD, {"PAINTING_ADMIN_PASSWORD": CHOSEN_PASSWORD})
        first_password = next(iter(result.starts[0].logins))
        result.starts[1].logins[first_password] = post_token(result.base_url, first_password)[0]
        result.starts[1].dags_listed = make_airflow(env, "dags list")
        path = "/api/v2/dags/~/dagRuns/~/taskInstances"
        result.task_instances = get_all(result.base_url, token, path, "task_instances")
        result.candidate_connection = get(
            result.base_url, token, "/api/v2/connections/painting_model_service_candidate"
        )
        result.shadow_variable = get(
            result.base_url, token, "/api/v2/variables/painting_candidate_conn_id"
        )
    finally:
        if result.current is not None:
            result.current.stop()
    return result


def test_both_starts_stop_cleanly_on_ctrl_c(scenario: Scenario) -> None:
    for start in scenario.starts:
        assert start.exit_code == 0, start.output
        assert "Stopped everything started here." in start.output
        assert "did not stop on SIGINT" not in start.output, start.output
        assert "Tasks still running" not in start.output, start.output


def test_no_task_is_queued_before_the_api_server_answers_and_none_fails(
    scenario: Scenario,
) -> None:
    assert scenario.running_at_stop, "the first Ctrl-C came while a task was running"
    tis = [ti for ti in scenario.task_instances if ti["dag_id"] == DAG_ID]
    restart = scenario.starts[1]
    of_restart = [
        ti for ti in tis if ti["queued_when"] and parse_time(ti["queued_when"]) > restart.began
    ]
    assert of_restart, "the restart ran no task"
    assert restart.api_answered is not None
    early = [ti for ti in of_restart if parse_time(ti["queued_when"]) < restart.api_answered]
    assert not early, f"queued before the api-server answered at {restart.api_answered}: {early}"
    retried = [
        (ti["dag_run_id"], ti["task_id"], ti["try_number"], ti["state"])
        for ti in tis
        if ti["try_number"] > 1 or ti["state"] in ("failed", "up_for_retry", "upstream_failed")
    ]
    assert not retried, f"failed or retried attempts: {retried}"


def test_the_password_is_generated_or_chosen_and_its_file_is_named(scenario: Scenario) -> None:
    first, restart = scenario.starts
    passwords = scenario.state_dir / ".airflow" / "simple_auth_manager_passwords.json.generated"
    (generated,) = first.logins
    assert first.logins[generated] == 201
    assert f"Log in as admin, password {generated}" in first.output
    assert f"stored in {passwords}; set PAINTING_ADMIN_PASSWORD to choose it" in first.output
    assert restart.logins[CHOSEN_PASSWORD] == 201
    assert restart.logins[generated] == 401, "the chosen password replaces the generated one"
    assert f"with the password of PAINTING_ADMIN_PASSWORD (stored in {passwords})" in restart.output
    assert CHOSEN_PASSWORD not in restart.output
    assert json.loads(passwords.read_text()) == {"admin": CHOSEN_PASSWORD}


def test_make_airflow_sees_the_stack_while_running_and_while_stopped(scenario: Scenario) -> None:
    offline = {d["dag_id"]: d for d in scenario.offline_list}
    running = {d["dag_id"]: d for d in scenario.starts[1].dags_listed}
    assert set(offline) >= PACKAGE_DAGS, offline
    assert set(running) >= PACKAGE_DAGS, running
    # The offline unpause went to the DB make run uses: the restart found it unpaused.
    assert offline[DAG_ID]["is_paused"] == "False"
    assert running[DAG_ID]["is_paused"] == "False"


def test_the_model_service_log_shows_its_start_and_the_requests(scenario: Scenario) -> None:
    log = (scenario.state_dir / ".local" / "logs" / "model-service.log").read_text()
    assert f"Uvicorn running on http://127.0.0.1:{scenario.model_port}" in log
    assert '"POST /predict/ HTTP/1.1" 204' in log or '"POST /predict/ HTTP/1.1" 200' in log


def test_a_candidate_runs_beside_production_and_every_row_goes_to_both(scenario: Scenario) -> None:
    port = scenario.candidate_port
    for start in scenario.starts:
        assert (
            f"Shadow mode on: every row also goes to the candidate at http://127.0.0.1:{port}"
            in (start.output)
        )
    log = (scenario.state_dir / ".local" / "logs" / "model-service-candidate.log").read_text()
    assert f"Uvicorn running on http://127.0.0.1:{port}" in log
    assert '"POST /predict/ HTTP/1.1" 204' in log or '"POST /predict/ HTTP/1.1" 200' in log
    connection = scenario.candidate_connection
    assert (connection["conn_type"], connection["host"], connection["port"]) == (
        "http",
        "127.0.0.1",
        port,
    )
    assert scenario.shadow_variable["value"] == "painting_model_service_candidate"
    ledgers = scenario.state_dir / ".airflow" / "painting_logs"
    records = [
        record
        for name in ("painting_issue_logs.jsonl", "painting_normal_logs.jsonl")
        for record in read_jsonl(ledgers / name)
    ]
    assert records, "no row was recorded"
    for record in records:
        assert record["candidate"]["kind"] in ("anomaly", "normal"), record
    # Ctrl-C stopped the candidate with the rest (by PID): its port is free again.
    assert local_services.port_is_free(port)
