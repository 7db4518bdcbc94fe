"""The replay's arithmetic and report: shard ranges, latency percentiles, the summary."""

from __future__ import annotations

import json
import random
import re

import pytest

from include.painting_simulator import settings
from include.painting_simulator.records import error_cause
from include.painting_simulator.replay import figures, plan, summary
from include.painting_simulator.results import open_results
from tests.support.replay_shards import shard_summary_of


def test_shards_split_the_range_contiguously_and_evenly():
    specs = plan.plan_shards(total=1000, start_row=100, rows=10, shards=3)
    assert [(s["start_row"], s["rows"]) for s in specs] == [(100, 4), (104, 3), (107, 3)]
    assert {s["shards"] for s in specs} == {3}
    assert [s["shard"] for s in specs] == [0, 1, 2]


def test_without_rows_the_range_runs_to_the_end_and_shards_never_outnumber_rows():
    specs = plan.plan_shards(total=5, start_row=3, rows=None, shards=8)
    assert [(s["start_row"], s["rows"]) for s in specs] == [(3, 1), (4, 1)]


@pytest.mark.parametrize(
    ("start_row", "rows", "message"),
    [
        (20, None, "start_row=20 is past the end of the sequence (20 rows)"),
        (15, 10, "start_row=15 + rows=10 goes past the end of the sequence (20 rows)"),
        (0, 0, "out of range"),
    ],
)
def test_a_range_outside_the_sequence_is_refused(start_row, rows, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plan.plan_shards(total=20, start_row=start_row, rows=rows, shards=1)


def test_latency_percentiles_are_within_one_percent_and_histograms_merge():
    rng = random.Random(3)
    samples = [rng.lognormvariate(-6, 1) for _ in range(20000)]
    first, second = figures.LatencyHistogram(), figures.LatencyHistogram()
    for i, seconds in enumerate(samples):
        (first if i % 2 else second).add(seconds)
    first.merge(figures.LatencyHistogram.from_json(json.loads(json.dumps(second.to_json()))))
    ordered = sorted(samples)
    for q in (50, 95, 99):
        exact = ordered[int(len(ordered) * q / 100) - 1]
        assert first.percentile(q) == pytest.approx(exact, rel=0.011)
    assert first.maximum == max(samples)
    assert first.percentile(100) == max(samples)
    assert figures.LatencyHistogram().percentile(50) == 0.0


def test_errors_are_grouped_by_cause():
    assert error_cause({"status": 422, "attempts": 1}) == "HTTP 422"
    assert error_cause({"error": "column 'Thick' is empty"}) == "row cannot be mapped"
    assert error_cause({"attempts": 3, "error": "unreachable"}) == (
        "no answer (connection error or timeout)"
    )


def shard_summary(shard: int, start: float, rows: int, anomalies: int, latency: float) -> dict:
    tally = figures.Tally(started_at=start, seconds=1.0)
    for i in range(rows):
        kind = "anomaly" if i < anomalies else "normal"
        tally.add({"kind": kind, "latency": latency})
    tally.add({"kind": "error", "status": 422, "attempts": 1, "latency": latency})
    tally.finished_at = start + 1.0
    return shard_summary_of(tally, shard, start_row=shard * 100)


def test_the_summary_adds_up_the_shards_over_wall_clock_time(tmp_path):
    shards = [shard_summary(1, 1000.5, 99, 9, 0.004), shard_summary(0, 1000.0, 99, 1, 0.002)]
    params = {"start_row": 0, "concurrency": 8, "rate": 0, "shards": 2}
    merged = summary.combine(shards, "manual__r1", params, "http://model:8001/predict/")

    assert merged["rows"] == 200
    assert merged["outcomes"] == {"anomaly": 10, "normal": 188, "error": 2}
    assert merged["errors_by_cause"] == {"HTTP 422": 2}
    assert merged["elapsed_seconds"] == 1.5  # the shards overlapped: 1000.0 -> 1001.5
    assert merged["throughput_rows_per_second"] == pytest.approx(133.3, abs=0.1)
    assert merged["latency_ms"]["max"] == 4.0
    assert 1.9 < merged["latency_ms"]["p50"] <= 4.0
    assert [s["shard"] for s in merged["per_shard"]] == [0, 1]

    table = summary.format_summary(merged)
    assert "2 shard(s), concurrency 8, rate unlimited" in table
    assert "anomaly           10    5.0 %" in table
    assert "HTTP 422" in table

    writer = open_results(str(tmp_path))
    writer.write_summary(merged)
    writer.write_summary(merged)  # the final task retried: still one line
    with open(tmp_path / settings.REPLAY_SUMMARY_FILE, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ["manual__r1"]


def expected_result(expected: str | None, kind: str, issue: str | None = None) -> dict:
    result: dict = {"kind": kind, "expected": expected, "latency": 0.001}
    if issue:
        result["prediction"] = {"issue": issue}
    if kind == "error":
        result.update(status=500, attempts=3)
    return result


def test_the_service_is_judged_against_the_expected_verdicts_across_shards():
    first, second = figures.Tally(), figures.Tally()
    for result in [
        expected_result("PAINT-EQ-VOL-HIGH", "anomaly", "PAINT-EQ-VOL-HIGH"),
        expected_result("PAINT-EQ-VOL-HIGH", "anomaly", "PAINT-EQ-MCH"),  # wrong code
        expected_result(None, "normal"),
        expected_result(None, "anomaly", "PAINT-EQ-MCH"),  # a false alarm
    ]:
        first.add(result)
    for result in [
        expected_result("PAINT-EQ-MCH", "anomaly", "PAINT-EQ-MCH"),
        expected_result(None, "normal"),
        expected_result("PAINT-EQ-MCH", "error"),  # no verdict: counted, and wrong
        {"kind": "normal", "latency": 0.001},  # no expectation: not counted
    ]:
        second.add(result)
    shards = []
    for index, tally in enumerate((first, second)):
        tally.finished_at = tally.started_at + 1
        # Through the progress file's JSON and back, as a retried shard reads it.
        tally = figures.Tally.from_json(json.loads(json.dumps(tally.to_json())))
        shards.append(shard_summary_of(tally, index))
    params = {"start_row": 0, "concurrency": 1, "rate": 0, "shards": 2}

    expected = summary.combine(shards, "manual__x", params, "http://m/predict/")["expected"]

    assert expected["rows"] == 7
    assert expected["accuracy"] == round(4 / 7, 6)
    assert expected["confusion"] == {
        "PAINT-EQ-MCH": {"PAINT-EQ-MCH": 1, "error": 1},
        "PAINT-EQ-VOL-HIGH": {"PAINT-EQ-MCH": 1, "PAINT-EQ-VOL-HIGH": 1},
        "normal": {"PAINT-EQ-MCH": 1, "normal": 2},
    }
    assert expected["by_issue"] == {
        "PAINT-EQ-MCH": {"precision": round(1 / 3, 6), "recall": 0.5, "support": 2},
        "PAINT-EQ-VOL-HIGH": {"precision": 1.0, "recall": 0.5, "support": 2},
        "normal": {"precision": 1.0, "recall": round(2 / 3, 6), "support": 3},
    }


def test_a_label_never_expected_or_never_got_has_no_recall_or_no_precision():
    tally = figures.Tally()
    tally.add(expected_result(None, "anomaly", "PAINT-EQ-TEM-LOW"))
    tally.add(expected_result("PAINT-EQ-CUR-HIGH", "normal"))
    scores = figures.expected_figures(tally.expected)["by_issue"]
    assert scores["PAINT-EQ-TEM-LOW"] == {"precision": 0.0, "recall": None, "support": 0}
    assert scores["PAINT-EQ-CUR-HIGH"] == {"precision": None, "recall": 0.0, "support": 1}
    assert figures.expected_figures(figures.Tally().expected) is None


def test_the_report_shows_accuracy_and_each_labels_scores_and_the_gate_uses_accuracy():
    from include.painting_simulator.replay import thresholds

    tally = figures.Tally(started_at=0.0, seconds=1.0, finished_at=1.0)
    for _ in range(9):
        tally.add(expected_result("PAINT-EQ-MCH", "anomaly", "PAINT-EQ-MCH"))
    tally.add(expected_result("PAINT-EQ-MCH", "normal"))
    shard = shard_summary_of(tally)
    params = {"start_row": 0, "concurrency": 1, "rate": 0, "shards": 1}
    limits = thresholds.limits({"expected_accuracy": 0.95}, "param thresholds")

    merged = summary.combine([shard], "manual__y", params, "http://m/predict/", limits)

    assert merged["thresholds"] == [
        {"name": "expected_accuracy", "limit": 0.95, "value": 0.9, "passed": False}
    ]
    table = summary.format_summary(merged)
    assert "  expected    10 row(s) with an expected verdict, accuracy 90.0 %" in table
    assert "    PAINT-EQ-MCH                    10    100.0 %   90.0 %" in table
    assert "    normal                           0      0.0 %        -" in table
    assert "✗ expected_accuracy 0.9 < 0.95 (min)" in table
