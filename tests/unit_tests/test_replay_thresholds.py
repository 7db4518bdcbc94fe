"""The replay's release gate: which limits are accepted, how each is judged, what a failure says."""

from __future__ import annotations

import json
import re

import pytest

from include.painting_simulator.replay import figures, summary, thresholds
from tests.support.replay_shards import shard_summary_of

PARAMS = {"start_row": 0, "concurrency": 4, "rate": 0, "shards": 1}


def one_shard(anomalies: int, normals: int, errors: int, latency: float) -> dict:
    """A shard's summary with these outcomes, every sent row taking ``latency`` seconds."""
    tally = figures.Tally(started_at=1000.0, seconds=1.0)
    for kind, count in (("anomaly", anomalies), ("normal", normals), ("error", errors)):
        for _ in range(count):
            tally.add({"kind": kind, "status": 500, "attempts": 1, "latency": latency})
    tally.finished_at = 1002.0
    return shard_summary_of(tally)


def judged(limits: dict, **outcomes: int) -> dict:
    """The summary of a 2-second replay of these outcomes at 10 ms a row, judged by ``limits``."""
    shard = one_shard(latency=0.010, **outcomes)
    checked = thresholds.limits(limits, "param thresholds")
    return summary.combine([shard], "manual__gate", PARAMS, "http://model/predict/", checked)


def test_every_threshold_is_judged_on_the_summarys_own_figures():
    # 100 rows in 2 s: 50 rows/s; 2 errors; 14 anomalies of 98 verdicts; every latency 10 ms.
    result = judged(
        {
            "latency_p95_ms": 10.5,
            "latency_p99_ms": 9.0,
            "error_rate": 0.01,
            "anomaly_rate": [0.1, 0.2],
            "throughput_rows_per_second": 40,
        },
        anomalies=14,
        normals=84,
        errors=2,
    )
    by_name = {t["name"]: t for t in result["thresholds"]}
    assert list(by_name) == [
        "latency_p95_ms",
        "latency_p99_ms",
        "error_rate",
        "anomaly_rate",
        "throughput_rows_per_second",
    ]
    assert by_name["latency_p95_ms"]["value"] == result["latency_ms"]["p95"]
    assert by_name["latency_p99_ms"]["value"] == result["latency_ms"]["p99"]
    assert 9.9 < result["latency_ms"]["p99"] <= 10.0
    assert by_name["error_rate"]["value"] == 0.02
    assert by_name["anomaly_rate"]["value"] == round(14 / 98, 6)
    assert by_name["throughput_rows_per_second"]["value"] == 50.0
    assert {name: t["passed"] for name, t in by_name.items()} == {
        "latency_p95_ms": True,
        "latency_p99_ms": False,
        "error_rate": False,
        "anomaly_rate": True,
        "throughput_rows_per_second": True,
    }
    assert by_name["anomaly_rate"]["limit"] == [0.1, 0.2]
    assert result["passed"] is False
    json.dumps(result)  # one line of painting_replay_summary.jsonl


def test_the_failure_message_names_each_failed_threshold_with_value_and_limit():
    result = judged({"error_rate": 0.01, "latency_p95_ms": 50}, anomalies=0, normals=9, errors=1)
    message = thresholds.failure_message(result["thresholds"])
    assert message == "1 of 2 replay threshold(s) failed: error_rate 0.1 > 0.01 (max)"
    assert thresholds.failure_message(judged({"error_rate": 0.5}, anomalies=0, normals=9, errors=1)
                                      ["thresholds"]) is None  # fmt: skip


def test_the_report_shows_a_tick_or_a_cross_per_threshold():
    result = judged(
        {"error_rate": 0.01, "anomaly_rate": [0.1, 0.5], "throughput_rows_per_second": 10},
        anomalies=1,
        normals=8,
        errors=1,
    )
    table = summary.format_summary(result)
    assert "  thresholds  FAILED (2 of 3)" in table
    assert "    ✗ error_rate 0.1 > 0.01 (max)" in table
    assert "    ✓ anomaly_rate 0.111111 in [0.1, 0.5]" in table
    assert "    ✗ throughput_rows_per_second 5 < 10 (min)" in table  # 10 rows in 2 s
    passed = summary.format_summary(judged({"error_rate": 0.2}, anomalies=1, normals=8, errors=1))
    assert "  thresholds  PASSED\n    ✓ error_rate 0.1 <= 0.2 (max)" in passed


def test_without_thresholds_the_replay_passes_and_says_so():
    result = judged({}, anomalies=1, normals=1, errors=1)
    assert result["thresholds"] == []
    assert result["passed"] is True
    assert "  thresholds  none set" in summary.format_summary(result)


def test_a_threshold_without_a_value_fails_and_says_why():
    # No row had an expected verdict: accuracy cannot be measured, so the gate cannot pass.
    result = judged({"expected_accuracy": 0.9}, anomalies=1, normals=1, errors=0)
    assert result["thresholds"] == [
        {"name": "expected_accuracy", "limit": 0.9, "value": None, "passed": False}
    ]
    assert "no row has an expected verdict (CSV column expected_issue)" in (
        thresholds.failure_message(result["thresholds"])
    )
    # Every row an error: no anomaly rate.
    nothing = judged({"anomaly_rate": [0, 1]}, anomalies=0, normals=0, errors=3)
    assert nothing["thresholds"][0]["value"] is None
    assert nothing["passed"] is False


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"latency_p90_ms": 5}, "unknown threshold(s) 'latency_p90_ms' (known: latency_p95_ms"),
        ({"latency_p95_ms": "50"}, "threshold 'latency_p95_ms': \"50\" is not a number"),
        ({"latency_p95_ms": True}, "threshold 'latency_p95_ms': true is not a number"),
        ({"latency_p95_ms": None}, "null is not a number (leave the key out for no limit)"),
        ({"latency_p99_ms": -1}, "threshold 'latency_p99_ms': -1 is out of range (at least 0)"),
        ({"error_rate": 1.5}, "threshold 'error_rate': 1.5 is out of range (0 to 1)"),
        ({"anomaly_rate": 0.1}, "threshold 'anomaly_rate': 0.1 is not a [min, max] pair"),
        ({"anomaly_rate": [0.1]}, "threshold 'anomaly_rate': [0.1] is not a [min, max] pair"),
        ({"anomaly_rate": [0.3, 0.1]}, "'anomaly_rate': min 0.3 is greater than max 0.1"),
        ({"anomaly_rate": [0, "x"]}, "threshold 'anomaly_rate': \"x\" is not a number"),
        ({"expected_accuracy": 2}, "threshold 'expected_accuracy': 2 is out of range (0 to 1)"),
        ({"agreement": 0.9}, "threshold 'agreement' needs candidate_conn_id"),
        ([1, 2], "[1, 2] is not an object"),
    ],
)
def test_an_unknown_name_or_a_malformed_limit_is_refused_naming_it(raw, message):
    with pytest.raises(thresholds.ThresholdError, match=re.escape(message)) as caught:
        thresholds.resolve(raw, None)
    assert str(caught.value).startswith("param thresholds: ")


def test_the_param_replaces_the_variable_as_a_whole():
    variable = json.dumps({"error_rate": 0.01, "latency_p95_ms": 50})
    assert thresholds.resolve(None, variable) == {"latency_p95_ms": 50, "error_rate": 0.01}
    assert thresholds.resolve({"latency_p99_ms": 80}, variable) == {"latency_p99_ms": 80}
    assert thresholds.resolve({}, variable) == {}  # an empty object: no thresholds at all
    assert thresholds.resolve(None, None) == {}
    assert thresholds.resolve(None, "  ") == {}


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("{error_rate: 0.1}", "Airflow Variable painting_replay_thresholds is not JSON"),
        (
            '{"error_rate": "high"}',
            "Airflow Variable painting_replay_thresholds: threshold "
            "'error_rate': \"high\" is not a number",
        ),
        ('"0.1"', 'Airflow Variable painting_replay_thresholds: "0.1" is not an object'),
    ],
)
def test_a_bad_variable_is_refused_naming_the_variable(variable, message):
    with pytest.raises(thresholds.ThresholdError, match=re.escape(message)):
        thresholds.resolve(None, variable)
