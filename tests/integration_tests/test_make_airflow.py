"""``make airflow ARGS=...`` runs the Airflow CLI with the environment ``make run`` gives Airflow
(:func:`scripts.run_local.airflow_env`), here offline against a state directory of its own; the
stack test (test_local_stack_start.py) uses it while ``make run`` runs."""

from __future__ import annotations

import os
from pathlib import Path

from scripts import run_local
from tests.support.make_targets import json_listing
from tests.support.make_targets import make_airflow as support_make_airflow

REPO = Path(__file__).resolve().parents[2]


def make_airflow(state_dir: Path, args: str) -> str:
    return support_make_airflow({**os.environ, "PAINTING_STATE_DIR": str(state_dir)}, args)


def test_make_airflow_uses_make_runs_home_and_sees_the_package_dags(tmp_path: Path) -> None:
    make_airflow(tmp_path, "db migrate")
    make_airflow(tmp_path, "dags reserialize")
    out = make_airflow(tmp_path, "dags list --output json")
    listed = json_listing(out)
    assert {d["dag_id"] for d in listed} >= {"painting_simulator", "painting_replay"}
    assert all(d["fileloc"].startswith(str(REPO / "dags")) for d in listed), listed
    assert (tmp_path / ".airflow" / "airflow.db").exists(), "AIRFLOW_HOME is make run's"
    value = make_airflow(tmp_path, "config get-value core dags_folder").strip().splitlines()[-1]
    assert value == str(REPO / "dags")


def test_its_environment_is_the_one_make_run_starts_airflow_with(monkeypatch) -> None:
    monkeypatch.setenv("PAINTING_AIRFLOW_PORT", "18123")
    env = run_local.airflow_env(run_local.airflow_port())
    assert env["AIRFLOW_HOME"] == str(run_local.AIRFLOW_HOME)
    assert env["AIRFLOW__API__PORT"] == "18123"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18123/execution/"
