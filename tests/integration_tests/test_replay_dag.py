"""The painting_replay DAG, run with dag.test() against real Azurite and the real model service.

Shards run as mapped tasks; every outcome lands in the simulator's ledgers once; the summary is
logged and written; the simulator's position is left alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from include.sample_data import generator
from scripts import local_services
from tests.support.connections import http_connection
from tests.support.dag_runs import alert_state, delete_alert_state, read_jsonl, task_output
from tests.support.smtp_server import smtp_connection, text

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PREFIX = "painting-process-equipment/"
SEED = 11
BAD_TIMESTAMP = "3,not-a-time,19.90,260.0,260.1,70.0,34.0,4.60,OP-02"
BAD_NUMBER = "4,2025-07-23T08:01:10,19.90,260.0,260.1,seventy,34.0,4.60,OP-02"


def generated_csv(rows: int, seed: int = SEED, extra_lines: tuple[str, ...] = ()) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=generator.COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(generator.generate_rows(rows, seed=seed))
    return (out.getvalue() + "".join(line + "\n" for line in extra_lines)).encode()


def replay_dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "painting_replay.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("painting_replay")


def recorded_keys(simulator: Any, run_id: str) -> list[tuple[str, int]]:
    keys = simulator.keys(run_id)
    return keys["anomaly"] + keys["normal"] + keys["error"]


def run_shard(simulator: Any, tmp_path: Path, rows: int, **options: Any) -> dict[str, Any]:
    """One shard of rows 0..rows-1, as the DAG's replay_shard task runs it (real hooks)."""
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    from include.painting_simulator.blob_rows import BlobRows
    from include.painting_simulator.replay import sender, shard
    from include.painting_simulator.row_cache import RowCache

    reader = BlobRows(
        WasbHook(wasb_conn_id="painting_blob_storage"),
        simulator.container,
        "painting_blob_storage",
        RowCache(str(tmp_path / "cache")),
    )
    endpoint = sender.endpoint_from_hook(HttpHook(http_conn_id="painting_model_service"), 5, 1)
    spec = {"shard": 0, "shards": 1, "start_row": 0, "rows": rows}
    return shard.run_shard(
        reader, PREFIX, spec, endpoint, output_dir=str(simulator.output_dir), **options
    )


def set_position(value: dict[str, Any]) -> None:
    from airflow.models.variable import Variable

    Variable.set("painting_position", json.dumps(value))


def test_a_sharded_replay_records_every_row_once_and_reports(simulator, caplog, capfd):
    # a.csv: 200 generated rows (planted anomalies known); b.csv: 5 more and two bad rows.
    simulator.upload(
        {
            "a.csv": generated_csv(200),
            "b.csv": generated_csv(5, seed=SEED + 1, extra_lines=(BAD_TIMESTAMP, BAD_NUMBER)),
        }
    )
    position = {"blob": PREFIX + "a.csv", "row": 42, "run_id": "scheduled__x"}
    set_position(position)

    run = replay_dag().test(run_conf={"start_row": 150, "concurrency": 4, "rate": 0, "shards": 3})

    assert run.state == "success"
    shard_tis = [ti for ti in run.get_task_instances() if ti.task_id == "replay_shard"]
    assert sorted(ti.map_index for ti in shard_tis) == [0, 1, 2]
    assert {ti.state for ti in shard_tis} == {"success"}

    # Every row of the range (150..206: 50 of a.csv, 7 of b.csv) in exactly one ledger, once.
    keys = simulator.keys(run.run_id)
    recorded = recorded_keys(simulator, run.run_id)
    expected = [(PREFIX + "a.csv", r) for r in range(150, 200)]
    expected += [(PREFIX + "b.csv", r) for r in range(7)]
    assert sorted(recorded) == expected

    # Verdicts: the planted anomalies, a 422 from the service, an unmappable row.
    planted = generator.anomaly_kinds(200, seed=SEED)[150:200]
    planted += generator.anomaly_kinds(5, seed=SEED + 1)
    anomalies = sum(kind != "normal" for kind in planted)
    assert len(keys["anomaly"]) == anomalies
    errors = {r["source"]["row"]: r for r in simulator.ledger("error")}
    assert sorted(errors) == [5, 6]
    assert errors[5]["status"] == 422
    assert "PT_jo_A_Main_1" in errors[6]["error"]

    # The summary: written once, with every figure; the shards add up.
    summary_file = simulator.output_dir / "painting_replay_summary.jsonl"
    summaries = [json.loads(line) for line in summary_file.read_text().splitlines()]
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary["run_id"] == run.run_id
    assert summary["rows"] == 57
    assert summary["shards"] == 3
    assert summary["outcomes"] == {"anomaly": anomalies, "normal": 55 - anomalies, "error": 2}
    assert summary["errors_by_cause"] == {"HTTP 422": 1, "row cannot be mapped": 1}
    assert [s["rows"] for s in summary["per_shard"]] == [19, 19, 19]
    assert [s["start_row"] for s in summary["per_shard"]] == [150, 169, 188]
    latency = summary["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert summary["throughput_rows_per_second"] > 0
    # Judged against the generator's expected_issue: right on every planted row; the two bad
    # rows (short of the column, so expected normal) ended as errors, which count as wrong.
    judged = summary["expected"]
    assert judged["rows"] == 57
    assert judged["accuracy"] == round(55 / 57, 6)
    assert judged["confusion"]["normal"] == {"normal": 55 - anomalies, "error": 2}
    assert sum(judged["by_issue"][code]["support"] for code in judged["by_issue"]) == 57
    assert all(
        scores["precision"] == 1.0 and scores["recall"] == 1.0
        for label, scores in judged["by_issue"].items()
        if label != "normal"
    )
    assert "error" not in judged["by_issue"]
    assert summary["thresholds"] == []
    assert summary["passed"] is True

    # The report in the task log is a readable table.
    out = caplog.text + capfd.readouterr().out
    assert "outcome         rows   share" in out
    assert "latency ms  p50" in out
    assert "HTTP 422" in out

    # The simulator's position is untouched.
    assert simulator.position() == position


def test_a_range_past_the_end_fails_at_once_naming_the_numbers(simulator, caplog, capfd):
    simulator.upload({"a.csv": generated_csv(20)})

    run = replay_dag().test(run_conf={"start_row": 15, "rows": 10})

    assert run.state == "failed"
    plan = run.get_task_instance("plan_shards")
    assert plan.try_number == 1  # a bad range is not retried
    out = caplog.text + capfd.readouterr().out
    assert "start_row=15 + rows=10 goes past the end of the sequence (20 rows)" in out
    assert simulator.ledgers() == {"anomaly": [], "normal": [], "error": []}


def test_a_retried_shard_resumes_and_records_the_interrupted_chunk_once(simulator, tmp_path):
    """A worker dying mid-shard cannot be produced on demand: its traces are made by hand (the
    progress file rolled back to an earlier chunk, as if the task died after writing the ledger
    lines of the next one). Everything else is real: Azurite, the model service, the ledgers."""
    from include.painting_simulator.replay import figures
    from include.painting_simulator.replay.shard import Progress

    simulator.upload({"a.csv": generated_csv(60)})
    options = {"concurrency": 3, "rate": 0}

    def shard(**extra: Any) -> dict[str, Any]:
        return run_shard(simulator, tmp_path, rows=60, run_id="manual__retry", **options, **extra)

    # First attempt, then roll its progress back to "20 rows recorded".
    shard(chunk_rows=10)
    progress = Progress(str(simulator.output_dir), "manual__retry", 0)
    complete = progress.load()
    progress.save(figures.Tally(rows=20))

    second = shard(chunk_rows=10)

    recorded = recorded_keys(simulator, "manual__retry")
    assert sorted(recorded) == [(PREFIX + "a.csv", r) for r in range(60)]
    assert second["rows"] == 60  # 20 from the progress file + the 40 after them, not 20 + 60
    assert complete.rows == 60
    # A finished shard run again (a cleared task) sends nothing and keeps its figures.
    again = shard()
    assert again["rows"] == 60
    assert again["outcomes"] == second["outcomes"]
    assert sorted(recorded) == sorted(recorded_keys(simulator, "manual__retry"))
    assert os.path.exists(progress.path)


def test_a_rate_paces_the_rows(simulator, tmp_path):
    """``rate`` is a ceiling: 20 rows at 40 rows/s cannot finish before 19/40 s have passed
    (a lower bound only, so a slow machine cannot make this fail)."""

    simulator.upload({"a.csv": generated_csv(20)})
    summary = run_shard(
        simulator, tmp_path, rows=20, run_id="manual__paced", concurrency=8, rate=40
    )
    assert summary["rows"] == 20
    assert summary["seconds"] >= 19 / 40
    assert summary["throughput_rows_per_second"] <= 40 * 20 / 19


def summaries(simulator: Any) -> list[dict[str, Any]]:
    return read_jsonl(simulator.output_dir / "painting_replay_summary.jsonl")


def summarize_xcom(run: Any) -> dict[str, Any] | None:
    """The summary summarize pushed (XCom key ``summary``), as a CI job reads it."""
    ti = run.get_task_instance("summarize")
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=ti.dag_id, run_id=ti.run_id, task_id="summarize", key="summary")
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)


def test_thresholds_that_pass_let_the_run_succeed_and_are_reported(simulator, caplog, capfd):
    simulator.upload({"a.csv": generated_csv(100)})
    # The Variable's default is replaced as a whole by the param (its impossible p95 is gone).
    simulator.set_variable("painting_replay_thresholds", json.dumps({"latency_p95_ms": 0}))
    limits = {
        "error_rate": 0,
        "anomaly_rate": [0.05, 0.3],
        "latency_p99_ms": 5000,
        "expected_accuracy": 1,
    }

    run = replay_dag().test(run_conf={"concurrency": 4, "thresholds": limits})

    assert run.state == "success"
    (summary,) = summaries(simulator)
    assert summary["passed"] is True
    assert [t["name"] for t in summary["thresholds"]] == [
        "latency_p99_ms",
        "error_rate",
        "anomaly_rate",
        "expected_accuracy",
    ]
    assert {t["name"]: t["passed"] for t in summary["thresholds"]} == {
        "latency_p99_ms": True,
        "error_rate": True,
        "anomaly_rate": True,
        "expected_accuracy": True,
    }
    by_name = {t["name"]: t for t in summary["thresholds"]}
    assert by_name["latency_p99_ms"]["value"] == summary["latency_ms"]["p99"]
    planted = sum(kind != "normal" for kind in generator.anomaly_kinds(100, seed=SEED))
    assert by_name["anomaly_rate"]["value"] == planted / 100
    assert by_name["expected_accuracy"]["value"] == summary["expected"]["accuracy"] == 1.0
    assert summarize_xcom(run) == summary
    out = task_output(caplog, capfd)
    assert "  expected    100 row(s) with an expected verdict, accuracy 100.0 %" in out
    assert "  thresholds  PASSED" in out
    assert f"✓ anomaly_rate {planted / 100:g} in [0.05, 0.3]" in out


def use_alert_mail(simulator: Any, monkeypatch: Any, connection: str) -> None:
    """The Variable painting_alert_rules with a connection and recipients (the gate mail needs
    no rules), and nothing remembered of earlier mails."""
    delete_alert_state()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", connection)
    simulator.set_variable(
        "painting_alert_rules", json.dumps({"conn_id": "smtp_alerts", "to": ["qa@example.com"]})
    )


def test_a_failed_threshold_fails_the_run_after_the_summary_is_written(
    simulator, smtp_server, monkeypatch, caplog, capfd
):
    simulator.upload({"a.csv": generated_csv(30, extra_lines=(BAD_TIMESTAMP,))})
    # From the Variable this time (no thresholds param): one error in 31 rows is too many.
    simulator.set_variable(
        "painting_replay_thresholds", json.dumps({"error_rate": 0.01, "latency_p99_ms": 5000})
    )
    use_alert_mail(simulator, monkeypatch, smtp_server.connection())

    run = replay_dag().test(run_conf={"concurrency": 2})

    assert run.state == "failed"
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert tis["replay_shard"].state == "success"
    assert tis["summarize"].state == "failed"
    assert tis["summarize"].try_number == 1  # a failed gate is not retried
    (summary,) = summaries(simulator)
    assert summary["passed"] is False
    assert summary["rows"] == 31
    assert summary["thresholds"][1] == {
        "name": "error_rate",
        "limit": 0.01,
        "value": round(1 / 31, 6),
        "passed": False,
    }
    assert summary["thresholds"][0]["passed"] is True
    assert summarize_xcom(run) == summary  # pushed before the run failed: CI reads it
    out = task_output(caplog, capfd)
    assert "  thresholds  FAILED (1 of 2)" in out
    assert "✓ latency_p99_ms" in out
    assert f"1 of 2 replay threshold(s) failed: error_rate {round(1 / 31, 6):g} > 0.01 (max)" in out
    assert len(simulator.ledger("error")) == 1  # every row was recorded before the verdict
    # The gate's mail (docs/alerts.md), before the run failed: each threshold, a link to the run.
    (message,) = smtp_server.messages
    assert message["To"] == "qa@example.com"
    assert message["Subject"] == (
        f"[painting] replay_gate: 1 of 2 threshold(s) failed in {run.run_id}"
    )
    body = text(message)
    assert f"✗ error_rate {round(1 / 31, 6):g} > 0.01 (max)" in body
    assert "✓ latency_p99_ms" in body
    assert f"/dags/painting_replay/runs/{urllib.parse.quote(run.run_id, safe='')}" in body
    assert alert_state()["sent"]["replay_gate"]["status"] == "sent"


def test_a_gate_mail_that_cannot_be_sent_never_hides_the_gates_failure(
    simulator, monkeypatch, caplog, capfd
):
    simulator.upload({"a.csv": generated_csv(10, extra_lines=(BAD_TIMESTAMP,))})
    port = local_services.free_port()  # nothing listens there: the connection is refused
    use_alert_mail(simulator, monkeypatch, smtp_connection(port))

    run = replay_dag().test(run_conf={"thresholds": {"error_rate": 0}})

    assert run.state == "failed"
    summarize = run.get_task_instance("summarize")
    assert summarize.state == "failed"
    assert summarize.try_number == 1  # the gate's failure, not retried as a mail error would be
    out = task_output(caplog, capfd)
    assert "the gate's mail was not sent: could not send digest replay_gate@" in out
    assert f"SMTP connection 'smtp_alerts' (127.0.0.1:{port}): ConnectionRefusedError" in out
    assert "1 of 1 replay threshold(s) failed: error_rate" in out


def test_a_malformed_threshold_fails_before_any_row_is_sent(simulator, caplog, capfd):
    simulator.upload({"a.csv": generated_csv(20)})

    run = replay_dag().test(run_conf={"thresholds": {"error_rate": 0.01, "p95": 10}})

    assert run.state == "failed"
    plan = run.get_task_instance("plan_shards")
    assert plan.state == "failed"
    assert plan.try_number == 1
    out = task_output(caplog, capfd)
    assert "param thresholds: unknown threshold(s) 'p95' (known: latency_p95_ms" in out
    assert simulator.ledgers() == {"anomaly": [], "normal": [], "error": []}
    assert summaries(simulator) == []


# The committed sample against a candidate started with --mch-threshold 3.0: the 23 rows the
# reference blames on an input and the candidate on the machine (row, reference's issue). The
# same rows as tests/unit_tests/test_reference_model.py finds with the model itself.
SAMPLE = REPO / "include" / "sample_data" / "painting_sample.csv"
KNOWN_DISAGREEMENTS = {
    114: "PAINT-EQ-CUR-LOW", 418: "PAINT-EQ-TEM-LOW", 492: "PAINT-EQ-CUR-LOW",
    598: "PAINT-EQ-TEM-HIGH", 661: "PAINT-EQ-TEM-HIGH", 731: "PAINT-EQ-VOL-LOW",
    797: "PAINT-EQ-TEM-LOW", 903: "PAINT-EQ-CUR-LOW", 980: "PAINT-EQ-TEM-HIGH",
    1144: "PAINT-EQ-TEM-HIGH", 1641: "PAINT-EQ-TEM-LOW", 1644: "PAINT-EQ-VOL-LOW",
    1958: "PAINT-EQ-TEM-HIGH", 1999: "PAINT-EQ-TEM-HIGH", 2052: "PAINT-EQ-TEM-HIGH",
    2091: "PAINT-EQ-VOL-HIGH", 2120: "PAINT-EQ-TEM-HIGH", 2218: "PAINT-EQ-CUR-LOW",
    2229: "PAINT-EQ-CUR-LOW", 2478: "PAINT-EQ-TEM-HIGH", 2633: "PAINT-EQ-TEM-HIGH",
    2674: "PAINT-EQ-TEM-HIGH", 2746: "PAINT-EQ-TEM-LOW",
}  # fmt: skip
CANDIDATE_ENV = "AIRFLOW_CONN_PAINTING_MODEL_SERVICE_CANDIDATE"


def label(verdict: dict[str, Any]) -> str:
    return verdict["issue"] if verdict["kind"] == "anomaly" else verdict["kind"]


def production_label(record: dict[str, Any], kind: str) -> str:
    return record["prediction"]["issue"] if kind == "anomaly" else kind


def test_a_candidate_side_by_side_shows_the_known_disagreements_and_gates_on_agreement(
    simulator, start_model_service, caplog, capfd
):
    simulator.upload({"painting_sample.csv": SAMPLE.read_bytes()})
    candidate = start_model_service("--model-version", "candidate-2", "--mch-threshold", "3.0")
    simulator.monkeypatch.setenv(CANDIDATE_ENV, http_connection(candidate.port))
    conf = {
        "concurrency": 8,
        "shards": 2,
        "candidate_conn_id": "painting_model_service_candidate",
        "thresholds": {"agreement": 0.995, "expected_accuracy": 1},
    }

    run = replay_dag().test(run_conf=conf)

    # Every row went to both; production's verdicts are the records' kind (all right), the
    # candidate's are in `candidate`, and they differ exactly on the known rows.
    ledgers = simulator.ledgers()
    assert sum(len(records) for records in ledgers.values()) == 3000
    assert ledgers["error"] == []
    differ = {}
    for kind, records in ledgers.items():
        for record in records:
            verdict = record["candidate"]
            assert set(verdict) == {"kind", "issue", "status", "latency_ms"}
            assert verdict["status"] == {"anomaly": 200, "normal": 204}[verdict["kind"]]
            assert verdict["latency_ms"] > 0
            assert production_label(record, kind) == (record["expected"] or "normal")
            if label(verdict) != production_label(record, kind):
                differ[record["source"]["row"]] = (production_label(record, kind), label(verdict))
    assert differ == {row: (issue, "PAINT-EQ-MCH") for row, issue in KNOWN_DISAGREEMENTS.items()}

    (summary,) = summaries(simulator)
    block = summary["candidate"]
    assert block["conn_id"] == "painting_model_service_candidate"
    assert block["rows"] == 3000
    assert block["errors"] == 0
    assert block["agreement"] == round(2977 / 3000, 6)
    off_diagonal = {
        (production, got): count
        for production, row in block["matrix"].items()
        for got, count in row.items()
        if got != production
    }
    assert off_diagonal == {
        ("PAINT-EQ-TEM-HIGH", "PAINT-EQ-MCH"): 11,
        ("PAINT-EQ-CUR-LOW", "PAINT-EQ-MCH"): 5,
        ("PAINT-EQ-TEM-LOW", "PAINT-EQ-MCH"): 4,
        ("PAINT-EQ-VOL-LOW", "PAINT-EQ-MCH"): 2,
        ("PAINT-EQ-VOL-HIGH", "PAINT-EQ-MCH"): 1,
    }
    assert block["matrix"]["normal"] == {"normal": summary["outcomes"]["normal"]}
    lat = block["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    # Production is still judged on its own: every expected verdict right.
    assert summary["expected"]["accuracy"] == 1.0

    # The gate: agreement 0.992333 < 0.995 fails the run once the summary is written.
    assert run.state == "failed"
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert tis["summarize"].state == "failed"
    assert summary["passed"] is False
    assert summary["thresholds"] == [  # in the order of thresholds.RULES
        {"name": "agreement", "limit": 0.995, "value": 0.992333, "passed": False},
        {"name": "expected_accuracy", "limit": 1, "value": 1.0, "passed": True},
    ]
    out = task_output(caplog, capfd)
    assert "1 of 2 replay threshold(s) failed: agreement 0.992333 < 0.995 (min)" in out
    assert re.search(r"PAINT-EQ-TEM-HIGH\s+-> PAINT-EQ-MCH\s+11\n", out)


@pytest.mark.parametrize("candidate_is", ["down", "answering garbage"])
def test_a_candidate_that_is_down_or_answers_garbage_never_fails_a_production_row(
    simulator, answering_server, candidate_is, caplog, capfd
):
    simulator.upload({"a.csv": generated_csv(30, extra_lines=(BAD_TIMESTAMP, BAD_NUMBER))})
    if candidate_is == "down":
        port = local_services.free_port()  # nothing listens there
    else:  # a real server whose 200 answers are not JSON
        port = answering_server({("POST", "/predict/"): (200, "<html>oops</html>")})
    simulator.monkeypatch.setenv(CANDIDATE_ENV, http_connection(port))

    run = replay_dag().test(
        run_conf={"concurrency": 16, "candidate_conn_id": "painting_model_service_candidate"}
    )

    assert run.state == "success"
    planted = generator.anomaly_kinds(30, seed=SEED)
    ledgers = simulator.ledgers()
    assert len(ledgers["anomaly"]) == sum(kind != "normal" for kind in planted)
    assert len(ledgers["normal"]) == sum(kind == "normal" for kind in planted)
    errors = {record["source"]["row"]: record for record in ledgers["error"]}
    assert sorted(errors) == [30, 31]
    assert errors[30]["status"] == 422  # production's own answer, unchanged
    assert "candidate" not in errors[31]  # unmappable: sent to neither service
    sent = ledgers["anomaly"] + ledgers["normal"] + [errors[30]]
    cause = "model service unreachable" if candidate_is == "down" else "200 answer is not JSON"
    for record in sent:
        assert record["candidate"]["kind"] == "error"
        assert record["candidate"]["issue"] is None
        assert cause in record["candidate"]["error"]
        assert record["candidate"]["status"] == (None if candidate_is == "down" else 200)
    (summary,) = summaries(simulator)
    block = summary["candidate"]
    assert block["errors"] == block["rows"] == 31
    assert block["agreement"] is None  # no row got a verdict from both
    assert sum(block["matrix"]["normal"].values()) == len(ledgers["normal"])
    assert set(block["matrix"]) == {
        "normal",
        "error",
        *{r["prediction"]["issue"] for r in ledgers["anomaly"]},
    }
    assert summary["outcomes"]["error"] == 2
    # Production's latency is its own calls', not the candidate's retries (1 s + 2 s back-off).
    assert summary["latency_ms"]["p99"] < 1000
    if candidate_is == "down":
        assert block["latency_ms"]["p50"] >= 3000


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (
            {"candidate_conn_id": "no_such_candidate"},
            "candidate_conn_id: connection 'no_such_candidate' is not defined",
        ),
        (
            {"thresholds": {"agreement": 0.9}},
            "param thresholds: threshold 'agreement' needs candidate_conn_id",
        ),
    ],
)
def test_a_missing_candidate_fails_at_plan_shards_before_any_row_is_sent(
    simulator, conf, message, caplog, capfd
):
    simulator.upload({"a.csv": generated_csv(20)})

    run = replay_dag().test(run_conf=conf)

    assert run.state == "failed"
    plan = run.get_task_instance("plan_shards")
    assert plan.state == "failed"
    assert plan.try_number == 1
    assert message in task_output(caplog, capfd)
    assert simulator.ledgers() == {"anomaly": [], "normal": [], "error": []}
    assert summaries(simulator) == []
