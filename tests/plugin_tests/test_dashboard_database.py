"""The dashboard's JSON API on the results database answers as on the files, over HTTP.

Real DAG runs (dag.test(), Azurite, the real model services) write to a real results database
(a SQLite file, a real PostgreSQL server, the connection ``painting_results_db``): a simulator
window with anomalies, normals and errors, a window in shadow mode whose candidate disagrees on
a known row, and a replay with that candidate. The plugin, in Airflow's own api-server app,
answers every endpoint × every range from the database; then the same records, exported to
ledger files byte for byte, are answered by the plugin without the connection (the files path):
the answers are equal, ``generated_at`` aside. Both stores are asked within one minute (the
ranges end at the current one; the comparison is asked again when a minute began meanwhile).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from include.painting_simulator import settings
from include.painting_simulator.dashboard.answers import now_minute
from scripts import local_services

pytestmark = pytest.mark.integration

ENGINES = pytest.mark.parametrize("results_db", ["sqlite", "postgresql"], indirect=True)
REPO = Path(__file__).resolve().parents[2]
RANGES = ("15m", "1h", "6h", "24h", "7d", "30d", "all")
CANDIDATE = "painting_model_service_candidate"


def every_answer(client: Any, auth: dict[str, str]) -> dict[str, Any]:
    got: dict[str, Any] = {}

    def ask(path: str, **params: Any) -> None:
        answer = client.get(f"/painting/api/{path}", params=params, headers=auth)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        body.pop("generated_at", None)
        got[f"{path} {json.dumps(params)}"] = body

    for name in RANGES:
        ask("summary", range=name)
        ask("shadow", range=name)
    for limit, offset in ((10, 0), (2, 1), (3, 4), (500, 0)):
        ask("anomalies/recent", limit=limit, offset=offset)
    ask("replays/recent", limit=10)
    ask("shadow/disagreements", limit=20)
    return got


@ENGINES
def test_the_api_answers_from_the_database_as_from_the_files(
    simulator, results_db, start_model_service, airflow_app, tmp_path: Path
):
    from airflow.dag_processing.dagbag import DagBag

    from include.painting_simulator.results_export import export_ledgers
    from tests.support.rows import BAD_NUMBER, NORMAL_1, VOLTAGE_TOO_HIGH, csv_bytes

    simulator.upload({
        "line.csv": csv_bytes(NORMAL_1, VOLTAGE_TOO_HIGH, BAD_NUMBER, NORMAL_1),
        "painting_sample.csv": local_services.SAMPLE_CSV.read_bytes(),
    })  # fmt: skip
    assert simulator.run({"start_row": 0, "batch_size": 4}).state == "success"
    candidate = start_model_service("--model-version", "candidate-2", "--mch-threshold", "3.0")
    simulator.monkeypatch.setenv(
        "AIRFLOW_CONN_PAINTING_MODEL_SERVICE_CANDIDATE",
        json.dumps(local_services.http_connection(candidate.port)),
    )
    simulator.set_variable(settings.VAR_CANDIDATE_CONN_ID, CANDIDATE)
    # Rows 110..119 of the sample (after line.csv's 4): row 114 is a known disagreement.
    shadow_run = simulator.run({"start_row": 114, "batch_size": 10})
    assert shadow_run.state == "success"
    bag = DagBag(dag_folder=str(REPO / "dags" / "painting_replay.py"))
    conf = {"start_row": 100, "rows": 30, "candidate_conn_id": CANDIDATE}
    replay = bag.get_dag(settings.REPLAY_DAG_ID).test(run_conf=conf)
    assert replay.state == "success"
    client = airflow_app.client
    auth = {"Authorization": f"Bearer {airflow_app.token()}"}

    files = tmp_path / "exported"
    export_ledgers(results_db.store(), str(files))
    database = os.environ["AIRFLOW_CONN_PAINTING_RESULTS_DB"]
    output_dir = os.environ.get("AIRFLOW_VAR_PAINTING_OUTPUT_DIR")
    for _ in range(3):  # the ranges end at the current minute: both stores asked within one
        minute = now_minute()
        simulator.monkeypatch.setenv("AIRFLOW_CONN_PAINTING_RESULTS_DB", database)
        if output_dir is None:  # as it was before the files were asked
            simulator.monkeypatch.delenv("AIRFLOW_VAR_PAINTING_OUTPUT_DIR", raising=False)
        else:
            simulator.monkeypatch.setenv("AIRFLOW_VAR_PAINTING_OUTPUT_DIR", output_dir)
        from_database = every_answer(client, auth)
        simulator.monkeypatch.delenv("AIRFLOW_CONN_PAINTING_RESULTS_DB")
        simulator.monkeypatch.setenv("AIRFLOW_VAR_PAINTING_OUTPUT_DIR", str(files))
        from_files = every_answer(client, auth)
        if now_minute() == minute:
            break

    assert from_database.keys() == from_files.keys()
    for name, answer in from_files.items():
        assert from_database[name] == answer, name
    summary = from_database['summary {"range": "all"}']
    rows = results_db.scalar("SELECT count(*) FROM painting_results")
    assert summary["totals"]["total"] == rows == 4 + 10 + 30
    assert summary["simulator"]["last_run"]["run_id"] == shadow_run.run_id
    assert summary["simulator"]["last_run"]["records"]["anomaly"] > 0
    shadow = from_database['shadow {"range": "1h"}']
    assert shadow["counts"]["disagreed"] == 1
    assert shadow["replay_rows_left_out"] == 30  # the replay's rows, known by their dag_id
    (disagreement,) = from_database['shadow/disagreements {"limit": 20}']["records"]
    assert (disagreement["row"], disagreement["run_id"]) == (114, shadow_run.run_id)
    assert from_database['replays/recent {"limit": 10}']["reports"][0]["run_id"] == replay.run_id
    dag_ids = dict(results_db.rows("SELECT run_id, min(dag_id) FROM painting_results GROUP BY 1"))
    assert dag_ids[replay.run_id] == settings.REPLAY_DAG_ID
    assert dag_ids[shadow_run.run_id] == settings.SIMULATOR_DAG_ID
