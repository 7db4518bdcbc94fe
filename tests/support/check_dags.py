"""Running the connection-check DAGs with dag.test() and reading what a run did and logged.

Also :class:`Storage`, the storage check's setup: its own container, connection and Variables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scripts import local_services

REPO = Path(__file__).resolve().parents[2]


@dataclass
class CheckRun:
    """A finished run of a check DAG and everything its tasks logged."""

    run: Any
    log: str

    @property
    def state(self) -> str:
        return self.run.state

    def task_states(self) -> dict[str, str | None]:
        return {ti.task_id: ti.state for ti in self.run.get_task_instances()}

    def reschedules(self, task_id: str) -> list[Any]:
        """The TaskReschedule rows of a task: one per poke that did not succeed."""
        from airflow.models.taskreschedule import TaskReschedule
        from airflow.utils.session import create_session

        ti = self.run.get_task_instance(task_id)
        with create_session() as session:
            rows = session.query(TaskReschedule).filter(TaskReschedule.ti_id == ti.id).all()
            session.expunge_all()
        return sorted(rows, key=lambda row: row.start_date)


class CheckDags:
    """Run a check DAG once with dag.test() and collect what its tasks logged."""

    def __init__(self, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture) -> None:
        self.caplog, self.capfd = caplog, capfd
        self._dags: dict[str, Any] = {}

    def dag(self, dag_id: str) -> Any:
        if dag_id not in self._dags:
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(REPO / "dags" / f"{dag_id}.py"))
            assert not bag.import_errors, bag.import_errors
            self._dags[dag_id] = bag.dags[dag_id]
        return self._dags[dag_id]

    def run(self, dag_id: str, **params: Any) -> CheckRun:
        self.capfd.readouterr()
        self.caplog.clear()
        run = self.dag(dag_id).test(run_conf=params or None)
        out, err = self.capfd.readouterr()
        return CheckRun(run, self.caplog.text + out + err)


@dataclass
class Storage:
    azurite: Any
    container: str
    monkeypatch: pytest.MonkeyPatch

    def upload(self, blobs: dict[str, bytes]) -> None:
        self.azurite.upload(self.container, blobs)

    def use_connection_string(self, connection_string: str) -> None:
        self.monkeypatch.setenv(
            "AIRFLOW_CONN_PAINTING_BLOB_STORAGE",
            json.dumps(local_services.wasb_connection(connection_string)),
        )

    def set_variable(self, name: str, value: str) -> None:
        self.monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)
