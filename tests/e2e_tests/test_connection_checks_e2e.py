"""The two connection-check DAGs on a real scheduler (``airflow standalone``, LocalExecutor).

dag.test() runs a reschedule-mode sensor in a loop of its own; here the scheduler does: each
poke is a separate task run, the sensor is ``up_for_reschedule`` (no worker slot) in between,
the timing comes from the params given at trigger time, and the task log files (what the UI
shows) carry the cause and never the storage account key. Triggered with the CLI, observed by
reading the metadata DB (SQLite, read-only) and the log files.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scripts import local_services

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
STORAGE, MODEL = "check_azure_storage_connection", "check_model_service_connection"
POKE, TIMEOUT = 10, 15  # seconds: 10 is the shortest poke interval the docs recommend


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows from the metadata DB, read-only; [] while the DB is busy or not created yet."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)) as c:
            return c.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []


def wait_until(what: str, condition: Callable[[], Any], timeout: float, server: Any) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running:
            pytest.fail(f"standalone exited while waiting for {what}:\n{server.log_tail()}")
        if result := condition():
            return result
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}:\n{server.log_tail()}")


def task_log(home: Path, dag_id: str, task_id: str) -> str:
    """The events of a task's log files (JSON lines, as the UI's log viewer reads them)."""
    events = []
    for path in sorted((home / "logs" / f"dag_id={dag_id}").glob(f"*/task_id={task_id}/*.log")):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                events.append(str(record.get("event", "")))
                events += [str(e.get("exc_value", "")) for e in record.get("error_detail") or []]
    return "\n".join(events)


def test_both_checks_on_a_real_scheduler(
    tmp_path: Path, azurite: Any, model_service: local_services.ServiceProcess
) -> None:
    home = tmp_path / "airflow"
    home.mkdir()
    container = f"e2e-check-{uuid.uuid4().hex[:12]}"
    azurite.upload(
        container, {"elsewhere/a.csv": b"x"}
    )  # the container exists, the prefix is empty
    port = local_services.free_port()
    env = local_services.standalone_env(
        home, port, azurite.connection_string, model_service.port, container,
        tmp_path / "painting_logs", HOST,
    )  # fmt: skip
    db = home / "airflow.db"
    server = local_services.AirflowStandalone(env, port, tmp_path / "standalone.log", HOST)
    server.start()
    try:
        server.wait_healthy(180, components=("metadatabase", "scheduler", "dag_processor"))
        wait_until(
            "the dag-processor to register both checks",
            lambda: len(query(db, "SELECT 1 FROM dag WHERE dag_id IN (?, ?)", STORAGE, MODEL)) == 2,
            90,
            server,
        )
        for dag_id, conf in [
            (MODEL, {}),
            (STORAGE, {"poke_interval_seconds": POKE, "timeout_seconds": TIMEOUT}),
        ]:
            trigger = [sys.executable, "-m", "airflow", "dags", "trigger", dag_id]
            subprocess.run(
                [*trigger, "-c", json.dumps(conf)], env=env, check=True, capture_output=True
            )

        sensor_states: set[str] = set()

        def finished() -> dict[str, str] | None:
            sensor_states.update(
                state
                for (state,) in query(
                    db,
                    "SELECT state FROM task_instance WHERE dag_id = ? AND task_id = ?",
                    STORAGE,
                    "wait_for_blobs",
                )
                if state
            )
            runs = dict(
                query(
                    db, "SELECT dag_id, state FROM dag_run WHERE dag_id IN (?, ?)", STORAGE, MODEL
                )
            )
            done = len(runs) == 2 and all(s in ("success", "failed") for s in runs.values())
            return runs if done else None

        runs = wait_until("both check runs to finish", finished, TIMEOUT + 120, server)
    finally:
        server.stop()

    assert runs == {MODEL: "success", STORAGE: "failed"}
    # Between pokes the sensor was up for reschedule: it held no worker slot while it waited.
    assert "up_for_reschedule" in sensor_states
    pokes = task_log(home, STORAGE, "wait_for_blobs")
    assert pokes.count(f"(next poke in {POKE} s, timeout {TIMEOUT} s)") >= 2
    assert f"no CSV under prefix 'painting-process-equipment/' in container '{container}'" in pokes
    assert f"(still so at the timeout of {TIMEOUT} s)" in pokes
    probe = task_log(home, MODEL, "probe_prediction")
    assert f"POST http://{HOST}:{model_service.port}/predict/ answered 204 in " in probe
    for path in (home / "logs").rglob("*"):
        if path.is_file():
            assert local_services.AZURITE_KEY not in path.read_text(errors="replace"), path
