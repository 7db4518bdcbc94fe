"""A candidate model service side by side: its verdict per row, and the agreement figures.

The figures go through the shard progress file's JSON (a retried shard resumes from it) and
merge across shards, as the replay's summary makes them.
"""

from __future__ import annotations

import json
import re

import pytest

from include.painting_simulator.model_client import CallResult, Outcome
from include.painting_simulator.records import candidate_verdict, row_record, sent_result
from include.painting_simulator.replay import figures, summary, thresholds
from include.painting_simulator.replay.shard import Progress
from tests.support.replay_shards import shard_summary_of

PARAMS = {"start_row": 0, "concurrency": 1, "rate": 0, "shards": 2}
CONN = "painting_model_service_candidate"


def verdict(kind: str, issue: str | None = None, ms: float = 5.0) -> dict:
    outcome = {
        "anomaly": Outcome("anomaly", prediction={"issue": issue}),
        "normal": Outcome("normal"),
        "error": Outcome("error", error="model service failed (503): down", status=503),
    }[kind]
    return candidate_verdict(CallResult(outcome, 1, reached=True), ms / 1000)


def result(kind: str, issue: str | None = None, candidate: dict | None = None) -> dict:
    value: dict = {"source": {"blob": "a.csv", "row": 0}, "kind": kind, "latency": 0.002}
    value.update(original_data={}, attempts=1)
    if issue:
        value["prediction"] = {"issue": issue}
    if kind == "error":
        value.update(error="model service failed (500): x", status=500)
    if candidate is not None:
        value["candidate"] = candidate
    return value


def test_the_candidates_verdict_names_kind_issue_status_latency_and_its_error():
    assert verdict("anomaly", "PAINT-EQ-MCH", 12.3456) == {
        "kind": "anomaly",
        "issue": "PAINT-EQ-MCH",
        "status": 200,
        "latency_ms": 12.346,
    }
    assert verdict("normal") == {"kind": "normal", "issue": None, "status": 204, "latency_ms": 5.0}
    assert verdict("error") == {
        "kind": "error",
        "issue": None,
        "status": 503,
        "latency_ms": 5.0,
        "error": "model service failed (503): down",
    }
    unreached = CallResult(Outcome("error", error="model service unreachable: X"), 3, False)
    assert candidate_verdict(unreached, 0.5)["status"] is None
    failed = candidate_verdict(None, 0.001, "candidate call failed: ValueError: garbage")
    assert failed == {
        "kind": "error",
        "issue": None,
        "status": None,
        "latency_ms": 1.0,
        "error": "candidate call failed: ValueError: garbage",
    }


def test_the_record_carries_the_candidate_and_keeps_productions_outcome():
    call = CallResult(Outcome("normal"), 1, reached=True)
    item = {"source": {"blob": "a.csv", "row": 7}, "body": {"thick": 1.0}}
    sent = {**sent_result(item, call), "candidate": verdict("anomaly", "PAINT-EQ-MCH")}
    record = row_record(sent, "manual__r", "2026-01-01T00:00:00.000Z")
    assert "prediction" not in record  # production said normal: the record is a normal one
    assert record["candidate"] == verdict("anomaly", "PAINT-EQ-MCH")
    assert list(record)[-1] == "original_data"
    assert "candidate" not in row_record(sent_result(item, call), "manual__r")


def tallies_through_progress_files(tmp_path, *shards: list[dict]) -> list[dict]:
    """Each shard's results tallied, saved to its progress file and loaded back (as a retried
    shard resumes), then summarised as ``run_shard`` returns it."""
    loaded = []
    for index, results in enumerate(shards):
        tally = figures.Tally()
        for value in results:
            tally.add(value)
        tally.finished_at = tally.started_at + 1
        progress = Progress(str(tmp_path), "manual__c", index)
        progress.save(tally)
        loaded.append(shard_summary_of(progress.load(), index))
    return loaded


def test_agreement_matrix_latency_and_errors_across_shards_through_the_progress_files(tmp_path):
    first = [
        result("normal", candidate=verdict("normal", ms=2.0)),
        result("normal", candidate=verdict("normal", ms=2.0)),
        result("anomaly", "PAINT-EQ-CUR-LOW", verdict("anomaly", "PAINT-EQ-MCH", ms=4.0)),
        result("anomaly", "PAINT-EQ-MCH", verdict("anomaly", "PAINT-EQ-MCH", ms=4.0)),
    ]
    second = [
        result("normal", candidate=verdict("anomaly", "PAINT-EQ-MCH", ms=8.0)),
        result("normal", candidate=verdict("error", ms=100.0)),  # the candidate gave no verdict
        result("error", candidate=verdict("normal", ms=2.0)),  # production gave none
        {"source": {"blob": "a.csv", "row": 9}, "kind": "error", "error": "x", "original_data": {}},
    ]  # the last: not sent (unmappable), so not sent to the candidate either

    shards = tallies_through_progress_files(tmp_path, first, second)
    candidate = summary.combine(shards, "manual__c", PARAMS, "http://m/predict/", {}, CONN)[
        "candidate"
    ]

    assert candidate["conn_id"] == CONN
    assert candidate["rows"] == 7
    assert candidate["matrix"] == {
        "PAINT-EQ-CUR-LOW": {"PAINT-EQ-MCH": 1},
        "PAINT-EQ-MCH": {"PAINT-EQ-MCH": 1},
        "error": {"normal": 1},
        "normal": {"PAINT-EQ-MCH": 1, "error": 1, "normal": 2},
    }
    # Both gave a verdict on 5 rows; 3 labels the same (different issue codes disagree).
    assert candidate["agreement"] == 0.6
    assert candidate["errors"] == 1
    lat = candidate["latency_ms"]
    assert lat["p50"] == pytest.approx(4.0, rel=0.01)
    assert lat["p99"] == pytest.approx(100.0, rel=0.01)
    assert lat["max"] == 100.0


def test_without_a_candidate_there_is_no_block_and_old_progress_files_load(tmp_path):
    shards = tallies_through_progress_files(tmp_path, [result("normal")])
    assert summary.combine(shards, "manual__c", PARAMS, "http://m/")["candidate"] is None
    old = figures.Tally().to_json()
    del old["candidate_matrix"], old["candidate_latency_histogram"]
    assert not figures.Tally.from_json(old).candidate
    # A candidate that was given but never got a row: no agreement, so the gate fails.
    empty = figures.candidate_figures(CONN, figures.Tally().candidate, figures.LatencyHistogram())
    assert empty["agreement"] is None
    assert empty["rows"] == 0


def test_the_report_shows_agreement_and_each_disagreement_and_the_gate_uses_agreement(tmp_path):
    rows = [result("normal", candidate=verdict("normal")) for _ in range(8)]
    rows += [result("anomaly", "PAINT-EQ-CUR-LOW", verdict("anomaly", "PAINT-EQ-MCH"))] * 2
    shards = tallies_through_progress_files(tmp_path, rows)
    limits = thresholds.resolve({"agreement": 0.9}, None, CONN)

    merged = summary.combine(shards, "manual__c", PARAMS, "http://m/", limits, CONN)

    assert merged["thresholds"] == [
        {"name": "agreement", "limit": 0.9, "value": 0.8, "passed": False}
    ]
    table = summary.format_summary(merged)
    assert (
        f"  candidate   {CONN}: 10 row(s) sent to both, agreement 80.0 %, 0 candidate error(s)"
        in table
    )
    assert re.search(r"PAINT-EQ-CUR-LOW\s+-> PAINT-EQ-MCH\s+2\n", table)
    assert "✗ agreement 0.8 < 0.9 (min)" in table


def test_agreement_is_refused_without_a_candidate_and_accepted_with_one():
    with pytest.raises(thresholds.ThresholdError, match="needs candidate_conn_id"):
        thresholds.resolve(None, json.dumps({"agreement": 0.9}))
    assert thresholds.resolve(None, json.dumps({"agreement": 0.9}), CONN) == {"agreement": 0.9}
