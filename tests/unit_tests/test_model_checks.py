"""Unit tests of the dashboard's "Model checks": the figures' definitions and the reader's index.

Rows with a ``candidate`` and replay summaries are made by the real code that writes them
(tests/support/model_checks.py: records, the replay's summary and thresholds, the results
writer); each figure is checked against records whose verdicts are known.
"""

from __future__ import annotations

import json
from pathlib import Path

from include.painting_simulator.dashboard.ledger_reader import (
    MAX_DISAGREEMENTS,
    LedgerSet,
    minute_of,
    now_minute,
)
from include.painting_simulator.dashboard.model_checks import (
    agreement_rate,
    replay_report,
)
from include.painting_simulator.records import AGREED, CANDIDATE_ERROR, DISAGREED, shadow_outcome
from include.painting_simulator.settings import LEDGER_FILES, REPLAY_SUMMARY_FILE
from tests.support.model_checks import (
    BLOB,
    CANDIDATE_CONN,
    replay_summary,
    shadow_record,
    write_replay,
    write_shadow_rows,
)

RUN = "scheduled__2026-01-01T00:00:00+00:00"
REPLAY = "manual__2026-01-01T00:30:00+00:00"
NOW = "2026-01-01T01:00:00Z"
MCH, CUR = "PAINT-EQ-MCH", "PAINT-EQ-CUR-LOW"


def write(output_dir: Path, records: list[dict]) -> None:
    """Append records to their kind's ledger, as the writer sorts them."""
    for record in records:
        kind = "anomaly" if "prediction" in record else "error" if "error" in record else "normal"
        with open(output_dir / LEDGER_FILES[kind], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def ledgers_at(output_dir: Path, now: str = NOW) -> LedgerSet:
    return LedgerSet(str(output_dir), clock=lambda: minute_of(now))


def test_shadow_outcome_compares_labels_and_counts_candidate_errors_apart():
    assert shadow_outcome("normal", "normal") == AGREED
    assert shadow_outcome(MCH, MCH) == AGREED
    assert shadow_outcome("normal", MCH) == DISAGREED
    assert shadow_outcome(CUR, MCH) == DISAGREED  # two different issue codes disagree
    assert shadow_outcome(MCH, "normal") == DISAGREED
    assert shadow_outcome("normal", "error") == CANDIDATE_ERROR  # never a disagreement
    assert shadow_outcome("error", "error") == CANDIDATE_ERROR
    assert shadow_outcome("error", "normal") is None  # production gave no verdict
    assert agreement_rate(0, 0) is None
    assert agreement_rate(3, 2) == 0.6667


def test_shadow_figures_from_rows_the_writer_wrote(tmp_path: Path):
    pairs = [
        ("normal", "normal"), ("normal", "normal"), (MCH, MCH),  # 3 agreed
        (CUR, MCH), ("normal", MCH),  # 2 disagreed
        ("normal", "error"), (MCH, "error"),  # the candidate gave no verdict: apart
        ("error", "normal"),  # production gave none: not compared
    ]  # fmt: skip
    write_shadow_rows(str(tmp_path), RUN, pairs)
    write_shadow_rows(str(tmp_path), "scheduled__no-candidate", [])  # nothing
    ledgers = LedgerSet(str(tmp_path))  # the writer logs them now
    end = now_minute() + 1
    shadow = ledgers.shadow(end - 60, end)
    assert shadow["counts"] == {
        "compared": 5, "agreed": 3, "disagreed": 2, "candidate_errors": 2, "agreement": 0.6,
    }  # fmt: skip
    assert shadow["replay_rows_left_out"] == 0
    assert sum(b["compared"] for b in shadow["timeline"]) == 5
    found = ledgers.disagreements(10)["records"]
    assert sorted((d["production"], d["candidate"], d["row"]) for d in found) == [
        (CUR, MCH, 3),
        ("normal", MCH, 4),
    ]
    assert {d["blob"] for d in found} == {BLOB}
    assert {d["run_id"] for d in found} == {RUN}
    assert {d["machine"] for d in found} == {"PAINT-1"}


def test_rows_without_a_candidate_are_no_shadow_data(tmp_path: Path):
    record = shadow_record(0, "normal", "normal", RUN, "2026-01-01T00:10:00.000Z")
    del record["candidate"]
    write(tmp_path, [record])
    shadow = ledgers_at(tmp_path).shadow(None, minute_of(NOW) + 1)
    assert shadow["counts"]["compared"] == shadow["counts"]["candidate_errors"] == 0
    assert shadow["counts"]["agreement"] is None
    assert ledgers_at(tmp_path).disagreements(10)["records"] == []


def test_agreement_over_time_in_the_summarys_buckets_and_replay_runs_left_out(tmp_path: Path):
    rows = [
        shadow_record(0, "normal", "normal", RUN, "2026-01-01T00:10:05.000Z"),
        shadow_record(1, "normal", MCH, RUN, "2026-01-01T00:10:40.000Z"),
        shadow_record(2, CUR, CUR, RUN, "2026-01-01T00:40:00.000Z"),
        shadow_record(3, "normal", "error", RUN, "2026-01-01T00:40:00.000Z"),
        # A replay with a candidate writes the same ledgers: its rows are not shadow mode's.
        shadow_record(4, CUR, MCH, REPLAY, "2026-01-01T00:30:00.000Z"),
        shadow_record(5, "normal", "normal", REPLAY, "2026-01-01T00:30:00.000Z"),
    ]
    write(tmp_path, rows)
    write_replay(str(tmp_path), replay_summary(REPLAY, [(CUR, MCH), ("normal", "normal")]))
    ledgers = ledgers_at(tmp_path)
    end = minute_of(NOW) + 1
    hour = ledgers.shadow(end - 60, end)
    assert hour["range"]["bucket_minutes"] == 1
    by_start = {b["start"]: b for b in hour["timeline"] if b["compared"] or b["candidate_errors"]}
    assert by_start == {
        "2026-01-01T00:10Z": {"start": "2026-01-01T00:10Z", "compared": 2, "agreed": 1,
                              "disagreed": 1, "candidate_errors": 0, "agreement": 0.5},
        "2026-01-01T00:40Z": {"start": "2026-01-01T00:40Z", "compared": 1, "agreed": 1,
                              "disagreed": 0, "candidate_errors": 1, "agreement": 1.0},
    }  # fmt: skip
    assert hour["counts"]["compared"] == 3
    assert hour["replay_rows_left_out"] == 2
    # The same buckets as the summary's timeline.
    assert [b["start"] for b in hour["timeline"]] == [
        b["start"] for b in ledgers.summary(end - 60, end)["timeline"]
    ]
    # A range that ends before the rows: none; "everything" starts at the first record.
    assert ledgers.shadow(end - 15, end)["counts"]["compared"] == 0
    assert ledgers.shadow(None, end)["range"]["from"] == "2026-01-01T00:10Z"
    # The disagreements table: the simulator's row, not the replay's.
    assert [(d["row"], d["run_id"]) for d in ledgers.disagreements(10)["records"]] == [(1, RUN)]


def test_a_replay_in_flight_counts_until_its_summary_is_written(tmp_path: Path):
    """Records do not name their DAG: a replay's run is known by its summary (documented)."""
    write(tmp_path, [shadow_record(0, CUR, MCH, REPLAY, "2026-01-01T00:30:00.000Z")])
    ledgers = ledgers_at(tmp_path)
    end = minute_of(NOW) + 1
    assert ledgers.shadow(None, end)["counts"]["disagreed"] == 1
    write_replay(str(tmp_path), replay_summary(REPLAY, [(CUR, MCH)]))
    assert ledgers.shadow(None, end)["counts"]["disagreed"] == 0
    assert ledgers.disagreements(10)["records"] == []


def test_folded_hours_keep_the_simulators_figures_and_drop_replays(tmp_path: Path):
    old = [
        shadow_record(0, "normal", "normal", RUN, "2026-01-01T00:10:00.000Z"),
        shadow_record(1, "normal", MCH, "scheduled__b", "2026-01-01T00:20:00.000Z"),
        shadow_record(2, "normal", "error", "scheduled__c", "2026-01-01T00:59:00.000Z"),
        shadow_record(3, CUR, MCH, REPLAY, "2026-01-01T00:30:00.000Z"),
    ]
    write(tmp_path, old)
    write_replay(str(tmp_path), replay_summary(REPLAY, [(CUR, MCH)]))
    ledgers = ledgers_at(tmp_path, now="2026-01-20T00:00:00Z")  # 19 days later: hours
    end = minute_of("2026-01-20T00:00:00Z") + 1
    everything = ledgers.shadow(None, end)
    index = ledgers.indexes["normal"]
    assert list(index.shadow) == [minute_of("2026-01-01T00:00:00Z")]  # one hour, one run
    assert everything["counts"] == {
        "compared": 2, "agreed": 1, "disagreed": 1, "candidate_errors": 1, "agreement": 0.5,
    }  # fmt: skip
    # The replay's row (per run until the fold) is dropped; nothing is left per run.
    assert list(ledgers.indexes["anomaly"].shadow.values()) == [[0, 0, 0]]
    assert all(not index.shadow_runs for index in ledgers.indexes.values())
    assert everything["replay_rows_left_out"] == 0  # dropped at the fold


def test_a_candidate_field_that_is_no_verdict_is_a_candidate_error(tmp_path: Path):
    odd = shadow_record(0, "normal", "normal", RUN, "2026-01-01T00:10:00.000Z")
    odd["candidate"] = {"kind": "maybe", "issue": None}
    bad = shadow_record(1, "normal", "normal", RUN, "2026-01-01T00:10:00.000Z")
    bad["candidate"] = "not an object"  # read by the slow path: no candidate
    listed = shadow_record(2, "normal", "normal", RUN, "2026-01-01T00:10:00.000Z")
    listed["candidate"] = {"kind": "anomaly", "issue": ["PAINT-EQ-MCH"]}  # no code: "anomaly"
    write(tmp_path, [odd, bad, listed])
    ledgers = ledgers_at(tmp_path)
    shadow = ledgers.shadow(None, minute_of(NOW) + 1)
    assert shadow["counts"]["candidate_errors"] == 1
    assert shadow["counts"]["compared"] == 1
    assert [(d["production"], d["candidate"]) for d in ledgers.disagreements(5)["records"]] == [
        ("normal", "anomaly")
    ]
    assert shadow["indexing"] is None


def test_the_disagreements_kept_are_bounded_and_newest_first(tmp_path: Path):
    rows = [
        shadow_record(i, "normal", MCH, RUN, f"2026-01-01T00:{i % 60:02d}:{i // 60:02d}.000Z")
        for i in range(MAX_DISAGREEMENTS + 100)
    ]
    write(tmp_path, rows)
    ledgers = ledgers_at(tmp_path)
    assert ledgers.ready()
    assert len(ledgers.indexes["normal"].disagreements) == MAX_DISAGREEMENTS
    page = ledgers.disagreements(5)["records"]
    stamps = [d["timestamp"] for d in page]
    assert stamps == sorted(stamps, reverse=True)
    assert len(page) == 5
    newest = max(r["timestamp"] for r in rows)
    assert stamps[0] == newest
    assert ledgers.shadow(None, minute_of(NOW) + 1)["counts"]["disagreed"] == len(rows)


def test_a_replays_many_disagreements_do_not_push_the_simulators_out(tmp_path: Path):
    simulator = shadow_record(0, "normal", MCH, RUN, "2026-01-01T00:10:00.000Z")
    replay = [
        shadow_record(i, CUR, MCH, REPLAY, "2026-01-01T00:30:00.000Z")
        for i in range(1, MAX_DISAGREEMENTS + 50)
    ]
    write(tmp_path, [simulator, *replay])
    write_replay(str(tmp_path), replay_summary(REPLAY, [(CUR, MCH)]))
    found = ledgers_at(tmp_path).disagreements(10)["records"]
    assert [(d["row"], d["run_id"]) for d in found] == [(0, RUN)]


def test_replay_reports_newest_first_with_thresholds_agreement_and_accuracy(tmp_path: Path):
    passed = replay_summary(
        "manual__1", [(CUR, CUR), ("normal", "normal")],
        limits={"latency_p95_ms": 50, "agreement": 0.995},
    )  # fmt: skip
    failed = replay_summary(
        "manual__2", [(CUR, MCH), ("normal", "normal")], latency_s=0.2,
        limits={"latency_p95_ms": 50, "agreement": 0.995},
    )  # fmt: skip
    plain = replay_summary("manual__3")  # no candidate, no thresholds
    for summary_ in (passed, failed, plain):
        write_replay(str(tmp_path), summary_)
    with open(tmp_path / REPLAY_SUMMARY_FILE, "a", encoding="utf-8") as fh:
        fh.write("not json\n")
    ledgers = ledgers_at(tmp_path)
    answer = ledgers.replay_reports(10)
    assert answer["total"] == 3
    reports = answer["reports"]
    assert [r["run_id"] for r in reports] == ["manual__3", "manual__2", "manual__1"]
    third, second, first = reports
    assert first["passed"] is True
    assert second["passed"] is False
    assert [(t["name"], t["passed"]) for t in second["thresholds"]] == [
        ("latency_p95_ms", False),
        ("agreement", False),
    ]
    agreement = failed["candidate"]["agreement"]
    assert agreement == round(101 / 102, 6)  # 100 normal rows and one of the pair agree
    assert second["thresholds"][1] == {
        "name": "agreement", "limit": 0.995, "value": agreement, "passed": False,
    }  # fmt: skip
    assert second["agreement"] == agreement
    assert first["agreement"] == 1.0
    assert first["candidate_conn_id"] == CANDIDATE_CONN
    assert first["accuracy"] == 1.0  # the normal rows were expected normal
    assert second["latency_p95_ms"] == failed["latency_ms"]["p95"] > 50
    assert first["rows"] == passed["rows"] == 102
    assert first["throughput_rows_per_second"] == passed["throughput_rows_per_second"]
    assert first["logged_at"] == passed["timestamp"]
    # Missing blocks are null, not errors.
    assert third["agreement"] is None
    assert third["candidate_conn_id"] is None
    assert third["thresholds"] == []
    assert third["passed"] is True
    assert ledgers.replay_reports(1)["reports"] == [third]


def test_replay_report_of_a_summary_missing_blocks():
    assert replay_report({"run_id": "manual__old", "rows": 5}) == {
        "run_id": "manual__old", "logged_at": None, "model_service": None, "rows": 5,
        "throughput_rows_per_second": None, "latency_p95_ms": None, "latency_p99_ms": None,
        "passed": None, "thresholds": None, "candidate_conn_id": None, "agreement": None,
        "candidate_errors": None, "accuracy": None,
    }  # fmt: skip
