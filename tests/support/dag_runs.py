"""Running the painting_simulator DAG with dag.test() and reading back what its runs did.

:class:`Simulator` is one isolated setup (its own container, output dir and position) that the
``simulator`` fixture wires to real Azurite and the real model service (and the results database
when the test has one); the functions read the ledgers (the files, or the database's records as
the files would hold them), the task output and the position, or make Airflow's retries quick.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from include.painting_simulator.settings import ANOMALY, ERROR, NORMAL
from scripts import local_services
from tests.support.azurite import AzuriteHandle
from tests.support.connections import http_connection
from tests.support.results_db import ResultsDb

REPO = Path(__file__).resolve().parents[2]
PREFIX = "painting-process-equipment/"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@dataclass
class Simulator:
    """One isolated simulator setup: its own container, output dir and position."""

    azurite: AzuriteHandle
    container: str
    output_dir: Path
    monkeypatch: pytest.MonkeyPatch
    runs: list[Any] = field(default_factory=list)
    results_db: ResultsDb | None = None  # None: the JSON-lines files in output_dir

    def upload(self, blobs: dict[str, bytes], prefix: str = "painting-process-equipment/") -> None:
        self.azurite.upload(self.container, {prefix + name: data for name, data in blobs.items()})

    def use_model_service(self, service: local_services.ServiceProcess) -> None:
        self.monkeypatch.setenv(
            "AIRFLOW_CONN_PAINTING_MODEL_SERVICE", http_connection(service.port)
        )

    def set_variable(self, name: str, value: str) -> None:
        self.monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)

    def dag(self) -> Any:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(REPO / "dags" / "painting_simulator.py"))
        assert not bag.import_errors, bag.import_errors
        return bag.get_dag("painting_simulator")

    def run(self, conf: dict[str, Any] | None = None, dag: Any = None) -> Any:
        """Run the DAG once with dag.test(); return the finished DagRun."""
        run = (dag or self.dag()).test(run_conf=conf)
        self.runs.append(run)
        return run

    def ledger(self, kind: str) -> list[dict[str, Any]]:
        """Every line of one row ledger (row records only: failure records have their own)."""
        from include.painting_simulator.settings import LEDGER_FILES, RESULTS_TABLE

        if self.results_db is not None:
            return self.results_db.records(RESULTS_TABLE, kind)
        return read_jsonl(self.output_dir / LEDGER_FILES[kind])

    def failures(self) -> list[dict[str, Any]]:
        """The failure records (a failed run: run, task, cause) in their own ledger."""
        from include.painting_simulator.settings import RUN_FAILURES_LEDGER, RUN_FAILURES_TABLE

        if self.results_db is not None:
            return self.results_db.records(RUN_FAILURES_TABLE)
        return read_jsonl(self.output_dir / RUN_FAILURES_LEDGER)

    def ledgers(self) -> dict[str, list[dict[str, Any]]]:
        return {kind: self.ledger(kind) for kind in (ANOMALY, NORMAL, ERROR)}

    def keys(self, run_id: str | None = None) -> dict[str, list[tuple[str, int]]]:
        """(blob, row) of every record per ledger, optionally for one run."""
        return {
            kind: [
                (r["source"]["blob"], r["source"]["row"])
                for r in records
                if run_id is None or r["run_id"] == run_id
            ]
            for kind, records in self.ledgers().items()
        }

    def position(self) -> dict[str, Any] | None:
        from airflow.models.variable import Variable

        value = Variable.get("painting_position", default_var=None)
        return json.loads(value) if value else None


def delete_position() -> None:
    """Forget the stored position (the Variable ``painting_position``): start at row 0."""
    from airflow.models.variable import Variable

    Variable.delete("painting_position")


def delete_alert_state() -> None:
    """Forget what the alerts remember (the Variable ``painting_alert_state``)."""
    from airflow.models.variable import Variable

    from include.painting_simulator.settings import VAR_ALERT_STATE

    Variable.delete(VAR_ALERT_STATE)


def alert_state() -> dict[str, Any] | None:
    """What the alerts remember: watermark, streaks, the last digest of each rule."""
    from airflow.models.variable import Variable

    from include.painting_simulator.settings import VAR_ALERT_STATE

    value = Variable.get(VAR_ALERT_STATE, default_var=None)
    return json.loads(value) if value else None


def all_keys(simulator: Any, run_id: str) -> list[tuple[str, int]]:
    keys = simulator.keys(run_id)
    return sorted(keys["anomaly"] + keys["normal"] + keys["error"])


def task_output(caplog: Any, capfd: Any) -> str:
    """What the tasks logged: dag.test() runs them in-process, so their log records reach
    pytest's log capture and the task runner's own lines reach this process's stdout."""
    return caplog.text + capfd.readouterr().out


def fast_retries(dag: Any) -> Any:
    """Keep Airflow's task retries but make them quick (their policy is not under test here)."""
    for task in dag.tasks:
        task.retry_delay = timedelta(seconds=1)
        task.retry_exponential_backoff = 0
    return dag
